"""Decode once: the training and validation images as uint8 arrays, so epochs read memory instead of files.

Every training and validation image is decoded once at the start of a run (the runtime's :func:`load_image`, as
the data check always did) and stored resized to the model's input size exactly as the runtime's preprocessing
resizes it, so a sample the random crop leaves whole is pixel for pixel what deployment scores (a margin for the
crop, tried first, put every sample a second resampling away from deployment's). The cache lives in RAM when it
fits half of the memory available, else in a memory-mapped file in the run folder, which ``--resume`` and later
runs on the same data reuse (keyed on paths, sizes, modification times and the size); where neither has room,
``auto`` decodes every epoch instead and says so, and an explicit ``ram`` or ``disk`` stops with the sizes before
anything is decoded (a cache must never exhaust memory or fill a disk mid-run).
Evaluation applies the runtime's own preprocessing to the cached validation images, which gives exactly what it
gives their files (tested), without decoding them again every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dfx.engine.artifact import atomic_write_text
from dfx.engine.decode import DecodeError
from dfx.engine.errors import DfxError
from dfx.engine.progress import progress_bar
from dfx.engine.spec import PreprocessSpec, resize_to_input

from .faces import load_training_image
from .options import CACHE_MODES

__all__ = ["ImageCache", "CACHE_MODES", "decode_once"]

log = logging.getLogger("dfx.training")
DISK_MARGIN = 1 << 30  # free disk a disk cache leaves for checkpoints, metrics and everything else


class ImageCache:
    """Decoded images, one uint8 (H, W, 3) row per sample, in RAM or memory-mapped from ``path``."""

    def __init__(self, array: np.ndarray, path: Path | None = None):
        self.array, self.path, self.shape = array, path, array.shape

    def image(self, i: int) -> Image.Image:
        """Sample ``i`` as an RGB image."""
        return Image.fromarray(self.array[i], "RGB")

    @property
    def nbytes(self) -> int:
        """Size of the cache."""
        return int(np.prod(self.shape))

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the file's name, not a copy of its contents (a RAM cache is shared by fork).
        if self.path is None:
            return self.__dict__
        return {"array": None, "path": self.path, "shape": self.shape}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.array is None:
            self.array = np.memmap(self.path, np.uint8, "r", shape=self.shape)


def _key(paths: list[str], side: tuple[int, int], interpolation: str, faces: Any = None) -> str:
    # faces: a cache of face crops is not one of whole images
    h = hashlib.sha1(json.dumps([list(side), interpolation, None if faces is None else repr(faces)]).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def _available_memory() -> int:
    """Memory a new allocation can get: Linux's MemAvailable (free plus reclaimable page cache), else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _free_disk(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free


def _where(mode: str, nbytes: int, folder: Path) -> str:
    """``ram``, ``disk`` or ``none`` for ``mode`` and a cache of ``nbytes``.

    Raises:
        DfxError: an explicit ``ram`` or ``disk`` without room for it, naming the sizes and the other choices.
    """
    need = f"{nbytes / 2**30:.1f} GiB"
    ram_room, disk_room = _available_memory() // 2, _free_disk(folder) - DISK_MARGIN
    if mode == "auto":
        mode = "ram" if nbytes <= ram_room else "disk" if nbytes <= disk_room else "none"
        if mode == "none":
            log.warning("the decoded images (%s) fit neither half the free memory nor the free disk in %s; "
                        "decoding every epoch instead", need, folder)
    elif mode == "ram" and nbytes > ram_room:
        raise DfxError(f"--cache ram needs {need}, more than half the free memory ({ram_room / 2**30:.1f} GiB); "
                       f"use --cache disk or auto, or --cache none")
    elif mode == "disk" and nbytes > disk_room:
        raise DfxError(f"--cache disk needs {need} in {folder}, which has {max(disk_room, 0) / 2**30:.1f} GiB to "
                       f"spare; use another --out, --cache ram or auto, or --cache none")
    return mode


def decode_once(paths: list[str], spec: PreprocessSpec, mode: str, folder: Path,
                threads: int = 8) -> tuple[ImageCache | None, dict[int, DecodeError]]:
    """Decodes ``paths`` once into a cache (``mode``: auto, ram, disk, none).

    Returns:
        (the cache, or None for ``none`` or a spec that crops; {index: error} for files that cannot be decoded —
        their rows stay zero and the caller drops them).
    """
    if mode not in CACHE_MODES:
        raise DfxError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    if mode == "none" or spec.resize != "squash":
        return None, {}
    side = tuple(spec.input_size)  # an uncropped sample is then exactly what deployment's preprocess sees
    shape = (len(paths), *side, 3)
    nbytes = int(np.prod(shape))
    key = _key(paths, side, spec.interpolation, spec.faces)
    file, meta = folder / f"decoded-{key}.u8", folder / f"decoded-{key}.json"
    reusable = file.is_file() and meta.is_file()
    if mode in ("auto", "disk") and reusable:  # a disk cache of the same files already exists: no room needed
        mode = "disk"
    else:
        mode = _where(mode, nbytes, folder)
    if mode == "none":
        return None, {}
    if mode == "disk" and reusable:
        errors = {int(i): DecodeError(*e) for i, e in json.loads(meta.read_text())["errors"].items()}
        log.info("reusing the decoded images in %s (%.0f MiB)", file, nbytes / 2**20)
        return ImageCache(np.memmap(file, np.uint8, "r", shape=shape), file), errors
    t0 = time.perf_counter()
    if mode == "disk":
        tmp = file.with_name(file.name + ".partial")
        array = np.memmap(tmp, np.uint8, "w+", shape=shape)
    else:
        array = np.zeros(shape, np.uint8)
    def fill(i: int) -> DecodeError | None:
        try:
            img = load_training_image(paths[i], spec)
        except DecodeError as e:
            return e
        array[i] = np.asarray(resize_to_input(img, spec))
        return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(progress_bar(pool.map(fill, range(len(paths))), total=len(paths),
                                    desc="decoding the images once", unit="img", leave=False))
    errors = {i: e for i, e in enumerate(results) if e is not None}
    if mode == "disk":
        array.flush()
        del array
        os.replace(tmp, file)
        atomic_write_text(meta, json.dumps({"shape": list(shape), "errors": {
            str(i): [e.status, e.message] for i, e in errors.items()}}))
        cache = ImageCache(np.memmap(file, np.uint8, "r", shape=shape), file)
    else:
        cache = ImageCache(array)
    log.info("decoded %d images (training and validation) once in %.1f s: %.0f MiB cache in %s", len(paths),
             time.perf_counter() - t0, nbytes / 2**20, "RAM" if mode == "ram" else file)
    return cache, errors
