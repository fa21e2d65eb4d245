"""Training data: ``real/`` and ``fake/`` folders, deterministic splits, a decode check, the Dataset.

Layouts accepted under each ``--data DIR`` (class folder names case-insensitive):
- ``DIR/train/{real,fake}`` and ``DIR/validate/{real,fake}`` (also ``val``/``validation``);
- ``DIR/{real,fake}``: a validation split is drawn by hashing, stored in the run folder (``split.json``) and
  reused on resume and incremental training, so it is never reshuffled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfx.engine.artifact import atomic_write_text
from dfx.engine.decode import DecodeError
from dfx.engine.errors import DfxError
from dfx.engine.inputs import TRAIN_NAMES, VAL_NAMES, child_dir, labelled_images, source_name
from dfx.engine.progress import progress_bar
from dfx.engine.spec import PreprocessSpec, preprocess

from .augment_batch import to_uint8_tensor
from .faces import load_training_image
from .sbi import face_marks, self_blend

__all__ = ["Sample", "DataSplits", "load_splits", "check_images", "FaceDataset"]

log = logging.getLogger("dfx.training")

# Frames of one video must not straddle the split: `<video>_<frame>` files are grouped by `<video>`.
_FRAME_SUFFIX = re.compile(r"[_-]\d+$")


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``label`` 1 = fake, 0 = real; ``source`` names the data set it came from."""

    path: str
    label: int
    source: str


@dataclass
class DataSplits:
    """Training and validation samples, and what was skipped."""

    train: list[Sample]
    val: list[Sample]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    split_record: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts per split, class and data set (stored in checkpoint metadata)."""
        def count(samples: list[Sample]) -> dict[str, Any]:
            by = Counter((s.source, s.label) for s in samples)
            sources = sorted({s.source for s in samples})
            return {src: {"real": by[(src, 0)], "fake": by[(src, 1)]} for src in sources}
        return {"train": count(self.train), "val": count(self.val),
                "skipped": {k: len(v) for k, v in self.skipped.items()}}


def _labelled(folder: Path, source: str) -> list[Sample]:
    return [Sample(str(p), label, source) for p, label in labelled_images(folder)]


def _hash_val(rel: str, fraction: float, seed: int) -> bool:
    group = _FRAME_SUFFIX.sub("", rel.rsplit(".", 1)[0])
    digest = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_splits(data_dirs: list[Path], val_fraction: float = 0.15, seed: int = 0,
                stored: dict[str, Any] | None = None) -> DataSplits:
    """Collects training and validation samples from one or more data folders.

    Args:
        data_dirs: folders in either accepted layout.
        val_fraction: share of groups held out for validation in the flat layout.
        seed: mixes into the split hash.
        stored: a previous run's ``split_record``; files it lists keep their split, new files are hashed.
    """
    train: list[Sample] = []
    val: list[Sample] = []
    record: dict[str, Any] = {}
    for data_dir in data_dirs:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DfxError(f"--data {data_dir}: no such folder")
        source = source_name(data_dir)
        tdir, vdir = child_dir(data_dir, TRAIN_NAMES), child_dir(data_dir, VAL_NAMES)
        if tdir is not None and vdir is not None:
            train += _labelled(tdir, source)
            val += _labelled(vdir, source)
            continue
        if tdir is not None or vdir is not None:
            raise DfxError(f"{data_dir}: has '{(tdir or vdir).name}/' but not its partner; give both "
                           f"train/ and validate/, or only real/ and fake/")
        samples = _labelled(data_dir, source)
        key = str(data_dir.resolve())
        # A stored split fixes the hash parameters; listed files keep their side even if the hash ever changes.
        prev = (stored or {}).get(key, {"val": [], "val_fraction": val_fraction, "seed": seed})
        prev_val = set(prev["val"])
        val_rel = []
        for s in samples:
            rel = Path(s.path).relative_to(data_dir).as_posix()
            if rel in prev_val or _hash_val(rel, prev["val_fraction"], prev["seed"]):
                val.append(s)
                val_rel.append(rel)
            else:
                train.append(s)
        record[key] = {"val": sorted(val_rel), "val_fraction": prev["val_fraction"], "seed": prev["seed"]}
        if not any(s.source == source for s in val) or not any(s.source == source for s in train):
            raise DfxError(f"{data_dir}: too few images to split off a validation set; add images or give "
                           f"train/ and validate/ folders")
    return DataSplits(train, val, split_record=record)


def check_images(samples: list[Sample], spec: PreprocessSpec, threads: int = 8,
                 desc: str = "checking images") -> tuple[list[Sample], dict]:
    """Decodes every image once (a progress bar on a terminal); unreadable ones are reported and dropped.

    Returns:
        (good samples, {status: [paths]}).
    """
    def probe(s: Sample) -> str | None:
        try:
            load_training_image(s.path, spec)
            return None
        except DecodeError as e:
            return e.status

    with ThreadPoolExecutor(max_workers=threads) as pool:
        statuses = list(progress_bar(pool.map(probe, samples), total=len(samples), desc=desc, unit="img",
                                     leave=False))
    good = [s for s, st in zip(samples, statuses) if st is None]
    bad: dict[str, list[str]] = {}
    for s, st in zip(samples, statuses):
        if st is not None:
            bad.setdefault(st, []).append(s.path)
    return good, bad


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's augmentation in one epoch."""
    digest = hashlib.sha1(f"{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class FaceDataset(torch.utils.data.Dataset):
    """Decodes with the runtime's decoder, augments (training only), then applies the runtime's preprocess.

    With ``sbi`` > 0 the data set grows by ``round(sbi × reals)`` self-blended pseudo-fakes (:mod:`.sbi`): item
    ``len(samples) + k`` is the k-th real image blended with itself, labelled fake, drawn afresh every epoch; its
    mask follows the face landmarks the runtime's detector finds on it (once, here).
    """

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, augment: Any = None, seed: int = 0,
                 cache: Any = None, rows: list[int] | None = None, sbi: float = 0.0, batch_augment: Any = None):
        self.samples = samples
        self.spec = spec
        self.augment = augment
        # With a BatchAugment, items are (cache row, augmentation parameters, label, new uint8 HWC image or None):
        # the batch is assembled, augmented and preprocessed on the device (training/batch_feed.py,
        # training/augment_batch.py); it needs the fixed-size cache.
        self.batch_augment = batch_augment
        self.seed = seed
        self.epoch = 0  # the epoch of items asked for by index alone
        self.cache, self.rows = cache, rows  # once-decoded images (training only) and each sample's row in them
        reals = [i for i, s in enumerate(samples) if s.label == 0]
        self.blended = reals[:round(sbi * len(reals))] if sbi > 0 else []  # the reals each pseudo-fake comes from
        # Each of those reals' face landmarks, found once: they place its blending mask (None: the stand-in ellipse).
        # Without pseudo-fakes the detector is not even loaded (validation sets, runs without --sbi).
        self.marks = face_marks(self._image(j) for j in self.blended) if self.blended else []

    def __len__(self) -> int:
        return len(self.samples) + len(self.blended)

    def item_samples(self) -> list[Sample]:
        """Every item as a labelled sample (pseudo-fakes as fakes of their real's data set), for sampler weights."""
        return self.samples + [Sample(self.samples[j].path, 1, self.samples[j].source) for j in self.blended]

    def _image(self, i: int):
        if self.cache is not None:
            return self.cache.image(self.rows[i])
        try:
            return load_training_image(self.samples[i].path, self.spec)
        except DecodeError as e:  # the file changed after the check: fail loudly rather than train on a blank
            raise DfxError(f"{self.samples[i].path}: {e}") from e

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Item ``i`` of epoch ``self.epoch``, or of the epoch given with it as ``(epoch, i)`` (:mod:`.epochs`)."""
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        blend = i >= len(self.samples)
        j = self.blended[i - len(self.samples)] if blend else i
        label = torch.tensor(float(1 if blend else self.samples[i].label))
        if self.augment is None and self.batch_augment is None and not blend:
            return torch.from_numpy(preprocess(self._image(j), self.spec)), label
        # The sample's randomness derives from (seed, epoch, index) alone — not from which DataLoader worker drew
        # it — so a run gives the same model whatever --workers or the machine's core count. Only the CPU
        # generator: torch.manual_seed would also reseed the GPU's, whose dropout masks would then follow the
        # last sample drawn in the main process (with --workers 0) rather than the epoch.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(sample_seed(self.seed, epoch, i))
            img = self_blend(self._image(j), self.marks[i - len(self.samples)]) if blend else None
            if self.batch_augment is not None:
                new, params = self.batch_augment.draw(lambda: self._image(j) if img is None else img)
                new = img if new is None else new
                return self.rows[j], params, label, None if new is None else to_uint8_tensor(new)
            img = self.augment(self._image(j) if img is None else img) if self.augment is not None else img
        return torch.from_numpy(preprocess(img, self.spec)), label


def save_split(path: Path, record: dict[str, Any]) -> None:
    """Stores the flat-layout split record in the run folder."""
    if record:
        atomic_write_text(path, json.dumps(record, indent=1))


def load_split(path: Path) -> dict[str, Any] | None:
    """The stored split record, or None when there is none.

    Raises:
        DfxError: when the file is torn or edited out of shape (the validation set must not change silently).
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        for key, entry in record.items():
            if not (isinstance(entry, dict) and isinstance(entry["val"], list)
                    and all(isinstance(v, str) for v in entry["val"]) and isinstance(entry["seed"], int)
                    and isinstance(entry["val_fraction"], (int, float)) and 0 < entry["val_fraction"] < 1):
                raise ValueError(f"entry {key!r} is malformed")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise DfxError(f"{path} is damaged ({type(e).__name__}: {e}); it fixes which images validate this run. "
                       f"Restore it, or delete it to draw a new split") from e
    return record


def class_weights(samples: list[Sample]) -> np.ndarray:
    """Per-sample weights that balance the classes (for weighted sampling)."""
    labels = np.array([s.label for s in samples])
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return (1.0 / counts[labels]) * (len(labels) / 2.0)


def source_class_weights(samples: list[Sample]) -> np.ndarray:
    """Per-sample weights that give every (data set, class) pair the same share of the draws.

    With several sources of unequal size, pooled sampling lets the largest set's artifacts dominate what the
    model learns; equal shares make each source's real and fake count alike.
    """
    groups = Counter((s.source, s.label) for s in samples)
    w = np.array([1.0 / groups[(s.source, s.label)] for s in samples])
    return w * (len(samples) / w.sum())
