"""The training loop: AdamW, warm-up + cosine, clipping, early stopping on validation AUC, exact resume."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import dfx
from dfx.engine import metrics as M
from dfx.engine.artifact import ModelInfo, atomic_write_text
from dfx.engine.calibration import calibrated, calibration_report
from dfx.engine.errors import DfxError
from dfx.engine.progress import progress_bar
from dfx.engine.spec import PreprocessSpec

from .augment import CONTEXT_NEEDS_BATCH, Augment
from .augment_batch import BatchAugment
from .batch_feed import BatchImages, collate_rows
from .cache import ImageCache, decode_once
from .checkpoint import load_checkpoint, load_state, save_checkpoint, save_state
from .consistency import FramingConsistency
from .data import (
    DataSplits,
    FaceDataset,
    Sample,
    check_images,
    class_weights,
    load_split,
    load_splits,
    save_split,
    source_class_weights,
)
from .epochs import RunBatches, epoch_seed
from .faces import TRAIN_FACE_MODES, face_spec
from .host_memory import keep_freed_memory
from .options import AUGMENT_ON, BALANCE_MODES, CACHE_MODES, DEFAULT_AUGMENTATIONS, SELECT_MODES
from .registry import create_model, get_entry
from .report import plot_curves, write_model_card

__all__ = ["TrainConfig", "train", "evaluate", "predict", "predict_logits", "selection_score", "default_out_dir",
           "BALANCE_MODES"]

log = logging.getLogger("dfx.training")
Cached = tuple[ImageCache, list[int]]  # once-decoded images and, for each sample, its row in them
DEFAULT_EPOCHS = 10
# What a run folder holds besides split.json (kept on --overwrite so later runs validate on the same images).
RUN_FILES = ("best.safetensors", "best.json", "last.pt", "metrics.jsonl", "config.json", "MODEL_CARD.md",
             "curves.png")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored as ``config.json`` in the run folder).

    ``None`` fields take the model's defaults from the registry.
    """

    model: str
    data: list[str]
    out: str | None = None
    epochs: int | None = None  # None: 10 for a new run, the stored value on --resume
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    input_size: int | None = None
    pretrained: bool | None = None
    pretrained_file: str | None = None
    init_from: str | None = None
    freeze_epochs: int = 0
    patience: int = 5
    balance: str = "loss"
    augment: list[str] = field(default_factory=lambda: list(DEFAULT_AUGMENTATIONS))
    val_fraction: float = 0.15
    seed: int = 0
    workers: int | None = None
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    ema_decay: float = 0.998
    cache: str = "auto"  # decode once: RAM when it fits, else disk, else every epoch (training/cache.py)
    faces: str = "off"  # off | precropped | detect (training/faces.py)
    face_scale: float | None = None  # --faces detect: crop side in detector boxes (default FaceCrop's 1.3)
    sbi: float = 0.0  # self-blended pseudo-fakes per real training image and epoch (training/sbi.py); 0 = off
    consistency: float = 0.0  # weight of the framing-consistency penalty (training/consistency.py); 0 = off
    select: str = "auc"  # auc | worst-source: what picks the kept epoch
    calibrate: bool = True  # fit a temperature on the validation split at the end (engine/calibration.py)
    threshold_policy: str = "eer"  # eer | fpr=<rate> | f1, on the calibrated scores
    compile: bool = False  # torch.compile the training step's model (off until measured faster: README)
    amp: bool = True  # mixed precision where the hardware computes it natively (_mixed_precision)
    augment_on: str = "auto"  # workers | device | auto (device with the cache): training/augment_batch.py
    deterministic: bool = False  # reproducible GPU kernels instead of the fastest (_algorithms)

    def resolved(self) -> TrainConfig:
        """A copy with the model's defaults filled in and the name made canonical."""
        entry = get_entry(self.model)
        d = dataclasses.replace(self, model=entry.name)
        if d.lr is None and d.batch_size is not None and d.batch_size != entry.train_defaults["batch_size"]:
            # Square-root scaling, the rule for Adam-family optimisers (Malladi et al., NeurIPS 2022): the model's
            # tuned learning rate belongs to its default batch size.
            d.lr = entry.train_defaults["lr"] * math.sqrt(d.batch_size / entry.train_defaults["batch_size"])
            log.info("--lr %.3g: scaled from %.3g for batch %d to batch %d (square-root rule)", d.lr,
                     entry.train_defaults["lr"], entry.train_defaults["batch_size"], d.batch_size)
        for key in ("batch_size", "lr", "weight_decay"):
            if getattr(d, key) is None:
                setattr(d, key, entry.train_defaults[key])
        if d.pretrained is None:
            d.pretrained = entry.family == "timm" and not d.pretrained_file and not d.init_from
        if d.workers is None:
            d.workers = min(4, os.cpu_count() or 1)
        if d.balance not in BALANCE_MODES:
            raise DfxError(f"--balance must be one of {', '.join(BALANCE_MODES)}, got {d.balance!r}")
        if d.epochs is None:
            d.epochs = DEFAULT_EPOCHS
        if d.augment_on not in AUGMENT_ON:
            raise DfxError(f"--augment-on must be one of {', '.join(AUGMENT_ON)}, got {d.augment_on!r}")
        if "context" in d.augment and (d.augment_on == "workers" or d.cache == "none"):
            raise DfxError(CONTEXT_NEEDS_BATCH)
        if d.select not in SELECT_MODES:
            raise DfxError(f"--select must be one of {', '.join(SELECT_MODES)}, got {d.select!r}")
        _check_policy(d.threshold_policy)
        if d.faces not in TRAIN_FACE_MODES:
            raise DfxError(f"--faces must be one of {', '.join(TRAIN_FACE_MODES)}, got {d.faces!r}")
        if d.face_scale is not None and d.faces != "detect":
            raise DfxError("--face-scale sets the crop of --faces detect; precropped measures it from the crops")
        _check_ranges(d)
        return d


# option → (lowest, highest or None, whether each end is allowed): the values a run can use
_RANGES = {
    "epochs": (0, None, True, True), "batch_size": (1, None, True, True), "lr": (0, None, False, True),
    "weight_decay": (0, None, True, True), "warmup_epochs": (0, None, True, True),
    "grad_clip": (0, None, True, True), "freeze_epochs": (0, None, True, True), "patience": (1, None, True, True),
    "val_fraction": (0, 1, False, False), "workers": (0, 256, True, True), "ema_decay": (0, 1, True, False),
    "max_steps_per_epoch": (1, None, True, True), "sbi": (0, 1, True, True),
    "consistency": (0, None, True, True),
    "face_scale": (0.5, 4, True, True),
}


def _check_ranges(cfg: TrainConfig) -> None:
    """Every numeric option is a finite number in its range (NaN, negative rates and the like are refused)."""
    for name, (lo, hi, lo_ok, hi_ok) in _RANGES.items():
        v = getattr(cfg, name)
        if v is None and name in ("max_steps_per_epoch", "face_scale"):  # optional: unset is fine
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DfxError(f"{flag} must be a number, got {v!r}")
        below = v < lo or (v == lo and not lo_ok)
        above = hi is not None and (v > hi or (v == hi and not hi_ok))
        if below or above:
            bound = f"{'≥' if lo_ok else '>'} {lo}" + (f" and {'≤' if hi_ok else '<'} {hi}" if hi is not None else "")
            raise DfxError(f"{flag} must be {bound}, got {v!r}")
    if cfg.input_size is not None and not (isinstance(cfg.input_size, int) and 8 <= cfg.input_size <= 4096):
        raise DfxError(f"--input-size must be an integer from 8 to 4096, got {cfg.input_size!r}")
    if cfg.cache not in CACHE_MODES:
        raise DfxError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {cfg.cache!r}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.device)):
        raise DfxError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")


def default_out_dir(model: str) -> Path:
    """Where ``dfx-train MODEL`` writes by default (``dfx-export --model`` and ``dfx-bench`` look there too)."""
    return Path("weights") / get_entry(model).name


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DfxError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return torch.device(name)


def _versions() -> dict[str, str]:
    v = {"dfx": dfx.__version__, "torch": torch.__version__, "numpy": np.__version__,
         "python": platform.python_version()}
    try:
        import timm

        v["timm"] = timm.__version__
    except ImportError:
        pass
    return v


def predict(model: torch.nn.Module, samples: list[Sample] | list[str], spec: PreprocessSpec,
            batch_size: int = 64, device: torch.device | str = "cpu", workers: int = 0,
            temperature: float = 1.0, cached: Cached | None = None) -> np.ndarray:
    """P(fake) for each file, decoded and preprocessed exactly as the runtime does (no augmentation), as
    ``sigmoid(logit / temperature)`` like the runtime."""
    logits = predict_logits(model, samples, spec, batch_size, device, workers, cached)
    return calibrated(logits, temperature).astype(np.float32)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, samples: list[Sample] | list[str], spec: PreprocessSpec,
                   batch_size: int = 64, device: torch.device | str = "cpu", workers: int = 0,
                   cached: Cached | None = None) -> np.ndarray:
    """The model's logit for each file (see :func:`predict`); ``cached``: the files' once-decoded images and each
    one's row in them (the runtime's preprocessing of a cached image is that of its file: training/cache.py)."""
    device = torch.device(device)
    samples = [s if isinstance(s, Sample) else Sample(str(s), 0, "") for s in samples]
    cache, rows = cached or (None, None)
    loader = DataLoader(FaceDataset(samples, spec, cache=cache, rows=rows), batch_size=batch_size,
                        num_workers=workers)
    model.eval()
    out = []
    for x, _ in loader:
        x = x.to(device)
        x = x.contiguous(memory_format=torch.channels_last)  # as the model (see train)
        out.append(model(x).float().squeeze(1).cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0, np.float64)


def evaluate(model: torch.nn.Module, samples: list[Sample], spec: PreprocessSpec, batch_size: int = 64,
             device: torch.device | str = "cpu", workers: int = 0, cached: Cached | None = None) -> dict[str, Any]:
    """Validation metrics overall and per data set; the threshold is the validation EER point."""
    scores = predict(model, samples, spec, batch_size, device, workers, cached=cached)
    labels = np.array([s.label for s in samples])
    _, thr = M.equal_error_rate(labels, scores) if 0 < labels.sum() < labels.size else (0, 0.5)
    result = M.summarize(labels, scores, thr)
    sources = sorted({s.source for s in samples})
    if len(sources) > 1:
        src = np.array([s.source for s in samples])
        result["per_source"] = {n: M.summarize(labels[src == n], scores[src == n], thr) for n in sources}
    return result


def _check_policy(policy: str) -> None:
    rate = policy[4:] if policy.startswith("fpr=") else None
    try:
        ok = policy in ("eer", "f1") or (rate is not None and 0.0 <= float(rate) < 1.0)
    except ValueError:
        ok = False
    if not ok:
        raise DfxError(f"--threshold-policy must be eer, f1 or fpr=<rate> with a rate in [0, 1), got {policy!r}")


def selection_score(metrics: dict[str, Any], select: str) -> float:
    """What picks the kept epoch: the pooled validation AUC, or (``worst-source``) the lowest per-source AUC — a
    model that fails one kind of fake is not rescued by the others."""
    per = metrics.get("per_source") or {}
    if select == "worst-source" and per:
        return float(min(m["auc"] for m in per.values()))
    return float(metrics["auc"])


def _schedule(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _set_backbone_frozen(model: torch.nn.Module, frozen: bool) -> None:
    head = model.head if hasattr(model, "head") and not hasattr(model, "get_classifier") else model.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    for p in model.parameters():
        if id(p) not in head_ids:
            p.requires_grad_(not frozen)


def _init_weights(model: torch.nn.Module, cfg: TrainConfig) -> None:
    path = Path(cfg.init_from)
    if not path.is_file():
        raise DfxError(f"--init-from {path}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        from .keras_weights import load_keras_mesonet

        load_keras_mesonet(model, path)
        return
    src, info = load_checkpoint(path)
    if info.arch != cfg.model:
        raise DfxError(f"--init-from {path} holds a {info.arch} model, not {cfg.model}")
    try:
        model.load_state_dict(src.state_dict())
    except RuntimeError as e:
        raise DfxError(f"--init-from {path}: weights do not fit this {cfg.model} (input size?): {e}") from e


def _log_epoch(epoch: int, epochs: int, loss: float, m: dict, ips: float, best: float, best_epoch: int) -> None:
    log.info("epoch %d/%d  loss %.4f  val acc %.4f auc %.4f ap %.4f eer %.4f  %.0f img/s  best auc %.4f (epoch %d)",
             epoch, epochs, loss, m["acc"], m["auc"], m["ap"], m["eer"], ips, best, best_epoch)


def _splits(cfg: TrainConfig, out: Path) -> DataSplits:
    """The run's training and validation samples (the stored split when the run folder has one)."""
    split_path = out / "split.json"
    splits = load_splits([Path(d) for d in cfg.data], cfg.val_fraction, cfg.seed, stored=load_split(split_path))
    save_split(split_path, splits.split_record)
    return splits


def _prepare_data(cfg: TrainConfig, out: Path, spec: PreprocessSpec,
                  splits: DataSplits) -> tuple[DataSplits, Cached | None, Cached | None]:
    """The splits with unreadable files dropped, and each split's once-decoded images with its samples' rows in
    them (one cache, training then validation; None without a cache)."""
    both = splits.train + splits.val
    n_train = len(splits.train)
    cache, errors = decode_once([s.path for s in both], spec, cfg.cache, out)
    train_cached = val_cached = None
    if cache is None:
        splits.train, bad_train = check_images(splits.train, spec, desc="decoding training images")
        splits.val, bad_val = check_images(splits.val, spec, desc="decoding validation images")
    else:  # the decode that filled the cache was the check
        bad_train, bad_val = {}, {}
        for i, e in errors.items():
            (bad_train if i < n_train else bad_val).setdefault(e.status, []).append(both[i].path)
        rows = [i for i in range(n_train) if i not in errors]
        val_rows = [i for i in range(n_train, len(both)) if i not in errors]
        splits.train, splits.val = [both[i] for i in rows], [both[i] for i in val_rows]
        train_cached, val_cached = (cache, rows), (cache, val_rows)
    for bad in (bad_train, bad_val):  # one status may occur in both splits: both lists count
        for status, paths in bad.items():
            splits.skipped.setdefault(status, []).extend(paths)
    if splits.skipped:
        detail = ", ".join(f"{len(v)} {k}" for k, v in splits.skipped.items())
        first = next(iter(splits.skipped.values()))[0]
        log.warning("skipped %d file(s) it could not use: %s (e.g. %s)", sum(map(len, splits.skipped.values())),
                    detail, first)
    for name, part in (("training", splits.train), ("validation", splits.val)):
        labels = {s.label for s in part}
        if labels != {0, 1}:
            missing = "real" if 0 not in labels else "fake"
            raise DfxError(f"no readable {missing} images left in the {name} split")
    return splits, train_cached, val_cached


def _stored_config(path: Path) -> TrainConfig:
    """The configuration a run was started with, for ``--resume``.

    Raises:
        DfxError: when it is missing, torn or edited into something that is not a dfx-train configuration.
    """
    try:
        cfg = TrainConfig(**json.loads(path.read_text()))
        cfg.resolved()  # validates the values, not just the names
        if not isinstance(cfg.epochs, int) or not isinstance(cfg.data, list):
            raise TypeError("epochs must be an integer and data a list")
        return cfg
    except FileNotFoundError as e:
        raise DfxError(f"cannot resume: {path} is missing; start the run again without --resume") from e
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError, DfxError) as e:
        raise DfxError(f"cannot resume: {path} is damaged ({type(e).__name__}: {e}); restore it, or start the "
                       f"run again with --overwrite") from e


def _claim_run_folder(out: Path, overwrite: bool) -> None:
    """Refuses to start a new run over an existing one, unless ``overwrite`` (then its files are removed)."""
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if not existing:
        return
    if not overwrite:
        raise DfxError(f"{out} already holds a training run ({', '.join(existing)}); continue it with --resume, "
                       f"start another with --out DIR, or replace it with --overwrite")
    log.warning("--overwrite: removing the previous run's %s from %s", ", ".join(existing), out)
    for name in existing:
        (out / name).unlink()


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Trains (or resumes) a run; writes the best checkpoint, ``last.pt``, ``metrics.jsonl`` and ``config.json``.

    Args:
        cfg: the run's configuration.
        resume: continue the run in ``cfg.out`` from its last finished epoch with its stored config; ``epochs``
            given (not None) replaces the stored number.
        overwrite: start a new run where one exists, removing its files (otherwise that is refused).

    Returns:
        Summary: best epoch, best validation metrics, checkpoint path.
    """
    asked_epochs = cfg.epochs
    cfg = cfg.resolved()
    out = Path(cfg.out) if cfg.out else default_out_dir(cfg.model)
    state = None
    if resume:
        state = load_state(out / "last.pt")
        stored = _stored_config(out / "config.json")
        if stored.model != cfg.model:
            raise DfxError(f"{out} holds a {stored.model} run, not {cfg.model}")
        cfg = dataclasses.replace(stored, epochs=stored.epochs if asked_epochs is None else asked_epochs)
    else:
        _claim_run_folder(out, overwrite)
        # Absolute, so that dfx-export run from another folder still finds the run's validation images.
        cfg = dataclasses.replace(cfg, data=[os.path.abspath(d) for d in cfg.data])
    with _algorithms(cfg.deterministic):
        return _train(cfg, out, state)


def _train(cfg: TrainConfig, out: Path, state: dict[str, Any] | None) -> dict[str, Any]:
    """The run itself, once its configuration and folder (and, resuming, its state) are settled."""
    entry = get_entry(cfg.model)
    spec = entry.default_spec.with_size(cfg.input_size)
    device = _device(cfg.device)
    if device.type == "cpu" and keep_freed_memory():
        log.debug("freed memory stays in the process between steps (glibc malloc thresholds, training/host_memory.py)")
    torch.manual_seed(cfg.seed)

    # The model first: missing ImageNet weights fail in seconds, before a run folder exists.
    fresh = state is None  # a resumed run's weights come from last.pt: no ImageNet download or file needed
    model, model_kwargs = create_model(cfg.model, spec, pretrained=cfg.pretrained and fresh,
                                       pretrained_file=cfg.pretrained_file if fresh else None)
    if cfg.init_from and fresh:
        _init_weights(model, cfg)
    out.mkdir(parents=True, exist_ok=True)
    splits = _splits(cfg, out)
    # The face crop before the data check: with --faces detect, a photo without a face is dropped there.
    spec = face_spec(cfg.faces, spec, [s.path for s in splits.train], cfg.seed, cfg.face_scale)
    splits, train_cached, val_cached = _prepare_data(cfg, out, spec, splits)
    cache, rows = train_cached or (None, None)
    log.info("%s on %s: %d training / %d validation images, device %s", cfg.model, ", ".join(cfg.data),
             len(splits.train), len(splits.val), device)

    # channels_last on every device: cuDNN's and oneDNN's fast convolutions both want it (Meso-4 on the 2-core
    # CPU: 1.3× per training step in fp32, 2× with bf16; benchmarks/train_throughput.py).
    model.to(device, memory_format=torch.channels_last)
    # An exponential moving average of the weights is what gets evaluated and kept: it smooths the epoch-to-epoch
    # swings of validation AUC that small face data sets show, and usually generalises better.
    ema = _ema(model, cfg.ema_decay)
    eval_model = ema.module if ema is not None else model
    atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))

    batch_aug = BatchAugment(cfg.augment, spec) if _augment_on(cfg, device, cache) == "device" else None
    train_ds = FaceDataset(splits.train, spec, None if batch_aug else Augment(cfg.augment), seed=cfg.seed,
                           cache=cache, rows=rows, sbi=cfg.sbi, batch_augment=batch_aug)
    items = train_ds.item_samples()  # with --sbi, the pseudo-fakes count as fakes of their real's data set
    labels = np.array([s.label for s in items])
    n_fake, n_real = int(labels.sum()), int(labels.size - labels.sum())
    if train_ds.blended:
        placed = sum(m is not None for m in train_ds.marks)
        log.info("self-blended pseudo-fakes: %d per epoch (from %d real images); masks placed by face landmarks on "
                 "%d, the stand-in ellipse on %d", len(train_ds.blended), n_real, placed, len(train_ds.marks) - placed)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, steps_per_epoch * cfg.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, int(steps_per_epoch * cfg.warmup_epochs)))
    pos_weight = torch.tensor(n_real / n_fake if cfg.balance == "loss" else 1.0, device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    use_amp, amp_dtype = _mixed_precision(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)  # bf16 needs none
    framing = FramingConsistency(cfg.consistency) if cfg.consistency > 0 else None
    # The compiled module shares the model's parameters; state dicts and the EMA keep using ``model``.
    step_model = torch.compile(model) if cfg.compile else model

    start, best_auc, best_epoch, bad_epochs = 0, -1.0, 0, 0
    best_metrics: dict[str, Any] = {}
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, best_auc, best_epoch, bad_epochs = state["epoch"], state["best_auc"], state["best_epoch"], \
            state["bad_epochs"]
        best_metrics = json.loads(state["best_metrics"])
        if start >= cfg.epochs or bad_epochs >= cfg.patience:
            log.info("run in %s already finished (epoch %d/%d); raise --epochs to continue", out, start, cfg.epochs)
            return {"best_epoch": best_epoch, "best": best_metrics, "checkpoint": str(out / "best.safetensors")}
        log.info("resuming %s after epoch %d", out, start)

    def save_best(epoch: int, metrics: dict[str, Any]) -> None:
        info = ModelInfo(arch=cfg.model, spec=spec, threshold=metrics["threshold"], model_kwargs=model_kwargs,
                         metrics=metrics, extra={"epoch": epoch, "config": dataclasses.asdict(cfg),
                                                 "data": splits.summary(), "versions": _versions()})
        save_checkpoint(out / "best.safetensors", eval_model, info)

    def finish(best_epoch: int, best_metrics: dict[str, Any]) -> dict[str, Any]:
        if cfg.calibrate:
            best_metrics = _calibrate(out / "best.safetensors", splits.val, cfg, device, val_cached)
        write_model_card(out, cfg, spec, best_epoch, best_metrics, splits.summary())
        try:
            plot_curves(out)
        except ImportError:
            log.warning("curves.png not written: matplotlib is missing (pip install 'dfx[train]')")
        return {"best_epoch": best_epoch, "best": best_metrics, "checkpoint": str(out / "best.safetensors")}

    if cfg.epochs == 0:  # imported or initial weights only: evaluate and keep them
        best_metrics = evaluate(model, splits.val, spec, cfg.batch_size, device, cfg.workers, val_cached)
        save_best(0, best_metrics)
        _log_epoch(0, 0, float("nan"), best_metrics, 0.0, best_metrics["auc"], 0)
        return finish(0, best_metrics)

    weights = {"sampler": class_weights, "source": source_class_weights}.get(cfg.balance)
    run_batches = RunBatches(len(train_ds), cfg.batch_size, steps_per_epoch, cfg.seed, range(start, cfg.epochs),
                             weights(items) if weights else None)
    # One loader for the whole run: its workers start once and keep prefetching across epochs (training/epochs.py).
    batches = iter(DataLoader(train_ds, batch_sampler=run_batches, num_workers=cfg.workers,
                              pin_memory=device.type == "cuda", collate_fn=collate_rows if batch_aug else None))
    batch_images = BatchImages(cache, device, n_rows=max(rows) + 1) if batch_aug is not None else None
    for epoch in range(start, cfg.epochs):
        # Seeds derive from (seed, epoch) alone, so a run resumed at any epoch replays the same randomness.
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        if cfg.freeze_epochs:
            _set_backbone_frozen(model, epoch < cfg.freeze_epochs)
        model.train()
        n_steps = len(run_batches.batches(epoch))
        t0, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=device)
        bar = progress_bar(range(n_steps), total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                           leave=False)
        for step in bar:
            batch = next(batches)
            if batch_aug is not None:  # cache rows and their parameters: assemble, augment, preprocess on the device
                _, params, y, _, _ = batch
                x = batch_aug.apply(batch_images(batch), params)
            else:
                x, y = batch
                x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                if framing is None:
                    loss = loss_fn(step_model(x).squeeze(1).float(), y)
                else:  # both views in one pass
                    logits, reframed = step_model(torch.cat([x, framing.reframe(x)])).squeeze(1).float().chunk(2)
                    loss = loss_fn(logits, y) + framing.penalty(logits, reframed)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update(model, step=epoch * steps_per_epoch + step)
            seen += x.shape[0]
            loss_sum += loss.detach() * x.shape[0]  # summed on the device: reading it every step would stall a GPU
            if step % 20 == 19:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", refresh=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the steps were only queued
        loss_sum = float(loss_sum)
        ips = seen / max(time.perf_counter() - t0, 1e-9)
        m = evaluate(eval_model, splits.val, spec, cfg.batch_size, device, cfg.workers, val_cached)
        m["selected_on"] = {"select": cfg.select, "score": selection_score(m, cfg.select)}
        # best_auc holds the selection score (the pooled AUC unless --select worst-source)
        if m["selected_on"]["score"] > best_auc or best_auc < 0:
            best_auc, best_epoch, bad_epochs, best_metrics = m["selected_on"]["score"], epoch + 1, 0, m
            save_best(epoch + 1, m)
        else:
            bad_epochs += 1
        _log_epoch(epoch + 1, cfg.epochs, loss_sum / max(seen, 1), m, ips, best_auc, best_epoch)
        record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": sched.get_last_lr()[0],
                  "images_per_s": ips, "val": m}
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_state(out / "last.pt", {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch + 1, "best_auc": best_auc, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "best_metrics": json.dumps(best_metrics),
            **({"ema": ema.state_dict()} if ema is not None else {})})
        if bad_epochs >= cfg.patience:
            log.info("early stop: validation AUC has not improved for %d epochs", cfg.patience)
            break
    del batches  # stops the loader's workers before calibration starts its own
    return finish(best_epoch, best_metrics)


def _calibrate(path: Path, val: list[Sample], cfg: TrainConfig, device: torch.device,
               cached: Cached | None = None) -> dict[str, Any]:
    """Fits a temperature to the kept model's validation logits and stores it, with the threshold the policy picks
    on the calibrated scores, in the checkpoint; returns its metrics with the report under ``calibration``."""
    model, info = load_checkpoint(path)
    logits = predict_logits(model.to(device), val, info.spec, cfg.batch_size, device, cfg.workers, cached)
    labels = np.array([s.label for s in val])
    report = calibration_report(logits, labels, np.array([s.source for s in val]), cfg.threshold_policy)
    # Fitted on the split that also picked the epoch: a slightly optimistic estimate, said in the model card.
    metrics = {**info.metrics, "calibration": report}
    info = dataclasses.replace(info, temperature=report["temperature"], threshold=report["threshold"],
                               metrics=metrics)
    save_checkpoint(path, model.cpu(), info)
    log.info("calibrated on %d validation images: temperature %.3f, threshold %.4f (%s), ECE %.4f → %.4f",
             report["n"], report["temperature"], report["threshold"], report["policy"], report["ece_before"],
             report["ece_after"])
    return metrics


def _augment_on(cfg: TrainConfig, device: torch.device, cache: ImageCache | None) -> str:
    """Where augmentation runs: ``device`` needs the fixed-size cache; ``auto`` takes it whenever there is one
    (faster on the 2-core CPU too: 127.5 against 104.9 img/s, benchmarks/results/train-cpu-bf16.md)."""
    if cfg.augment_on == "device" and cache is None:
        raise DfxError("--augment-on device augments the once-decoded images, and this run has none (--cache none, "
                       "no room for them, or a model whose preprocessing crops): use --augment-on workers")
    if cfg.augment_on == "auto":
        return "device" if cache is not None else "workers"
    return cfg.augment_on


def _mixed_precision(device: torch.device, enabled: bool = True) -> tuple[bool, torch.dtype]:
    """(autocast on, its dtype) for the training steps: bf16 where the GPU supports it (no loss scaling, no
    overflow), fp16 with a gradient scaler on older GPUs, bf16 on CPUs that compute it natively (AVX512-BF16 or
    AMX), full precision elsewhere or when not ``enabled``. Evaluation always runs in full precision."""
    if not enabled:
        return False, torch.float32
    if device.type == "cuda":
        return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    probe = getattr(torch.cpu, "get_capabilities", None)  # newer torch only: without it, full precision on CPUs
    caps = probe() if device.type == "cpu" and probe is not None else {}
    native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return native, torch.bfloat16 if native else torch.float32


@contextlib.contextmanager
def _algorithms(deterministic: bool) -> Iterator[None]:
    """torch's algorithm choices for one run, restored afterwards.

    By default cuDNN times its convolution algorithms once per shape and keeps the fastest (the input size is
    fixed, so that pays), and some of those accumulate in a varying order: two runs on a GPU then differ in the
    last bits. ``deterministic`` asks for reproducible kernels instead (slower on a GPU; the CPU's are anyway), and
    warns where an operation has none.
    """
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if deterministic:  # cuBLAS reproducibility needs a fixed workspace (CUDA's documentation on cuBLAS results)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = not deterministic, deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def _ema(model: torch.nn.Module, decay: float):
    if not decay:
        return None
    from timm.utils.model_ema import ModelEmaV3

    # Warm-up lets the average follow the fast early changes instead of dragging the initial weights along.
    return ModelEmaV3(model, decay=decay, use_warmup=True)

