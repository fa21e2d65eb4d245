"""Input discovery: files and folders, optionally recursive, symlinks followed without loops."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from .decode import is_image_path, is_video_path
from .errors import DfxError

__all__ = ["path_key", "source_name", "iter_inputs", "list_images", "child_dir", "find_class_dirs", "labelled_images",
           "CLASSES", "TRAIN_NAMES", "VAL_NAMES"]

CLASSES = {"real": 0, "fake": 1}  # class folder name → label (1 = fake, everywhere)
TRAIN_NAMES = ("train", "training")  # split folder names accepted in a data set (lower-cased)
VAL_NAMES = ("validate", "val", "validation", "valid")


def path_key(path: str | os.PathLike) -> str:
    """The identity of an input file — its real absolute path, however it was spelled (``./x/../x``, absolute,
    through a symlink) — so overlapping inputs and ``--resume`` never give one file two rows."""
    return os.path.realpath(path)


def _walk(folder: Path, recursive: bool, seen_dirs: set[tuple[int, int]], videos: bool,
          passed: Counter | None) -> Iterator[Path]:
    try:
        st = folder.stat()
    except OSError:  # e.g. a path longer than PATH_MAX: a row that says so, not silence
        yield folder
        return
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:  # a symlink loop, or the same folder reached twice
        return
    seen_dirs.add(key)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        # Its files cannot be known: the folder itself gets a row (status unreadable) instead of vanishing.
        yield folder
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(path, recursive, seen_dirs, videos, passed)
        elif is_image_path(path) or (videos and is_video_path(path)):
            yield path  # broken symlinks included: they get an 'unreadable' row rather than vanishing
        elif passed is not None:
            passed[path.suffix.lower() or "no extension"] += 1


def iter_inputs(paths: Iterable[str | Path], recursive: bool = False, videos: bool = False,
                passed: Counter | None = None) -> Iterator[Path]:
    """Image files (and video files, when ``videos``) to score, yielded lazily and in a stable order, each once.

    Files named explicitly are always yielded (whatever their extension); folders contribute files with an
    image extension (or a video one), descending into subfolders when ``recursive``. The other files met in
    folders are counted by extension into ``passed`` when given, so a caller can say what it did not look at.

    Raises:
        DfxError: when a named path does not exist.
    """
    paths = [Path(p) for p in paths]
    for p in paths:  # checked now, not on first iteration, so a typo fails before any output is written
        if not p.exists() and not p.is_symlink():
            raise DfxError(f"{p}: no such file or folder")
    return _iter(paths, recursive, videos, passed)


def _iter(paths: list[Path], recursive: bool, videos: bool, passed: Counter | None) -> Iterator[Path]:
    seen_dirs: set[tuple[int, int]] = set()
    # One folder never yields a file twice (seen_dirs stops re-walks); only several inputs can overlap, so the
    # per-file set — the one thing that grows with the collection — is kept only then.
    seen_files: set[str] | None = set() if len(paths) > 1 else None
    for p in paths:
        for f in _walk(p, recursive, seen_dirs, videos, passed) if p.is_dir() else iter([p]):
            if seen_files is not None:
                key = path_key(f)
                if key in seen_files:
                    continue
                seen_files.add(key)
            yield f


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p))


def source_name(folder: str | Path) -> str:
    """The data set a folder belongs to: its name, or its parent's for a split folder (``x/validate`` → ``x``)."""
    folder = Path(folder)
    return folder.parent.name if folder.name.lower() in TRAIN_NAMES + VAL_NAMES else folder.name


def child_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    """The first subfolder of ``parent`` whose lower-cased name is in ``names``."""
    for p in sorted(parent.iterdir()) if parent.is_dir() else []:
        if p.is_dir() and p.name.lower() in names:
            return p
    return None


def find_class_dirs(folder: Path) -> dict[int, Path]:
    """The ``real`` and ``fake`` subfolders of ``folder`` (case-insensitive), by label.

    Raises:
        DfxError: naming the missing class folder.
    """
    found = {}
    for name, label in CLASSES.items():
        d = child_dir(folder, (name,))
        if d is None:
            present = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir())) or "none"
            raise DfxError(f"{folder}: no '{name}/' folder (subfolders found: {present}); "
                           f"expected {folder}/real and {folder}/fake")
        found[label] = d
    return found


def labelled_images(folder: str | Path) -> list[tuple[Path, int]]:
    """(path, label) for every image in ``folder``/real and ``folder``/fake.

    Raises:
        DfxError: when a class folder is missing or holds no images.
    """
    items = []
    for label, d in find_class_dirs(Path(folder)).items():
        files = list_images(d)
        if not files:
            raise DfxError(f"{d}: no images found (extensions .jpg .jpeg .png .webp .bmp …)")
        items += [(p, label) for p in files]
    return items
