"""``run_bench()``: speed and accuracy per model x backend x batch size, measured in one run.

JSON schema (``schema_version`` 1; stable — fields are only ever added):

- ``schema_version`` (int), ``created`` (ISO time), ``environment``: ``cpu``, ``cores``, ``physical_cores``,
  ``gpus`` (list of names), ``platform``, ``versions`` (package → version).
- ``settings``: ``batch_sizes``, ``warmup_s``, ``min_runs``, ``min_s``, ``data`` (folder or null), ``e2e_images``.
- ``rows``: one per model x backend x batch size, each with ``model``, ``artifact``, ``kind`` (checkpoint | onnx |
  onnx-fp16 | onnx-int8 | engine), ``backend``, ``device``, ``status`` (ok | skipped | error), ``reason``,
  ``size_mb``, ``params``, ``batch_size``, ``latency_ms`` {mean, p50, p90, p99} (per batch, inputs already in
  memory), ``ms_per_image_p50``, ``images_per_s``, ``speedup_vs_eager`` (same model, batch size and device class),
  ``int8_vs_fp32`` (INT8 rows), ``device_ms`` {h2d, compute, d2h} (TensorRT rows: mean CUDA-event times; the
  latencies above include the copies), ``e2e_images_per_s`` and ``e2e_vs_compute`` (on the row whose batch size the
  end-to-end pass used), ``accuracy`` (metrics of :func:`dfx.engine.metrics.summarize`, or null without data).
- ``roc``: ``"model|backend"`` → {``fpr``, ``tpr``} (at most 200 points), when data was given.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import dfx
from dfx.engine import metrics as M
from dfx.engine.backends import Backend, get_backend_class
from dfx.engine.default_model import BUNDLED_MODEL, default_model_path
from dfx.engine.errors import DfxError
from dfx.engine.inputs import labelled_images
from dfx.engine.pipeline import score_files
from dfx.engine.progress import progress_bar

from .timing import measure

__all__ = ["run_bench", "discover_artifacts", "SCHEMA_VERSION", "artifact_kind", "machine_line"]

log = logging.getLogger("dfx.bench")
SCHEMA_VERSION = 1
GPU_BACKENDS = ("pytorch-eager-cuda", "onnxruntime-cuda", "tensorrt")


def artifact_kind(path: Path) -> str:
    """checkpoint | onnx | onnx-fp16 | onnx-int8 | engine, from the file name."""
    name = path.name.lower()
    if name.endswith(".safetensors"):
        return "checkpoint"
    if name.endswith(".plan"):
        return "engine"
    if name.endswith(".fp16.onnx"):
        return "onnx-fp16"
    if name.endswith(".int8.onnx"):
        return "onnx-int8"
    if name.endswith(".onnx"):
        return "onnx"
    raise DfxError(f"{path}: not a benchmarkable artifact (.safetensors, .onnx, .fp16.onnx, .int8.onnx, .plan)")


# kind → backends that run it; each appears as a row (skipped with a reason where unavailable here).
BACKENDS_FOR = {
    "checkpoint": ("pytorch-eager", "pytorch-eager-cuda"),
    "onnx": ("onnxruntime-cpu", "onnxruntime-cuda"),
    "onnx-fp16": ("onnxruntime-cuda",),
    "onnx-int8": ("onnxruntime-cpu",),
    "engine": ("tensorrt",),
}


def discover_artifacts(models: Sequence[str] | None = None, weights_dir: str | Path = "weights",
                       include_default: bool = True) -> list[Path]:
    """Artifacts where dfx-train and dfx-export put them: ``weights/<model>/`` (and the bundled model)."""
    root = Path(weights_dir)
    if models:
        from dfx.training.registry import resolve_name

        dirs = [root / resolve_name(m) for m in models]
        missing = [d for d in dirs if not (d / "best.safetensors").is_file() and not any(d.glob("*.onnx"))]
        if missing:
            raise DfxError(f"no artifacts in {', '.join(map(str, missing))}; train with dfx-train and export with "
                           f"dfx-export first, or name files with --artifacts")
    else:
        dirs = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    found: list[Path] = []
    for d in dirs:
        found += [p for p in sorted(d.iterdir()) if p.name == "best.safetensors" or
                  p.suffix in (".onnx", ".plan") and not p.name.endswith(".failed")]
    if include_default and not models:
        found.append(default_model_path())
    if not found:
        raise DfxError(f"nothing to benchmark under {root}/ — pass --artifacts or --models")
    return found


def _environment() -> dict[str, Any]:
    from dfx.engine.backends.onnxruntime_backend import physical_cores

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"dfx": dfx.__version__, "numpy": np.__version__}
    gpus: list[str] = []
    for mod in ("onnxruntime", "torch", "timm", "tensorrt", "PIL"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            continue
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "physical_cores": physical_cores(), "gpus": gpus,
            "platform": platform.platform(), "versions": versions}


def machine_line() -> str:
    """This machine in one line for a result's header: CPU model, cores, GPUs."""
    env = _environment()
    return f"{env['cpu']}, {env['cores']} cores, {', '.join(env['gpus']) or 'no GPU'}"


def _open(path: Path, backend: str) -> Backend:
    """Builds the backend for one row; DfxError/ImportError mean 'skipped here' with the message as reason."""
    if backend.startswith("pytorch-eager"):
        try:
            import torch
        except ImportError as e:
            raise DfxError("PyTorch is not installed (pip install 'dfx[train]')") from e
        from .torch_backend import TorchBackend

        if backend.endswith("cuda") and not torch.cuda.is_available():
            raise DfxError("no CUDA GPU visible to PyTorch")
        be = TorchBackend(path, "cuda" if backend.endswith("cuda") else "cpu")
        be.name = backend
        return be
    if backend == "tensorrt":
        from dfx.engine.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    return get_backend_class(backend)(path)


def _generated_files(n: int, size: tuple[int, int], root: Path) -> list[Path]:
    """``n`` noise JPEGs at ``size`` under ``root`` (made once per size, shared by every backend)."""
    from PIL import Image

    folder = root / f"{size[0]}x{size[1]}"
    if not folder.exists():
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            arr = np.clip(rng.normal(128, 40, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"{i:04d}.jpg", quality=90)
    return sorted(folder.iterdir())


def _speed(be: Backend, batch_sizes: Sequence[int], warmup_s: float, min_runs: int,
           min_s: float) -> tuple[dict[int, Any], dict[int, dict[str, float]]]:
    """Compute-only timings per batch size (clamped to the backend's profile), and TensorRT's copy/compute split."""
    h, w = be.info.spec.input_size
    sizes = sorted({max(be.min_batch, min(b, be.max_batch or b)) for b in batch_sizes})
    x_all = np.random.default_rng(0).normal(size=(max(sizes), 3, h, w)).astype(np.float32)
    sync = getattr(be, "synchronize", lambda: None)
    speed, copies = {}, {}
    for b in sizes:
        x = np.ascontiguousarray(x_all[:b])
        parts: list[dict[str, float]] = []

        def run(x=x, parts=parts) -> None:
            be.infer(x)
            sync()
            if getattr(be, "last_timing_ms", None):  # TensorRT: copies vs compute, by CUDA events
                parts.append(be.last_timing_ms)

        speed[b] = measure(run, b, warmup_s, min_runs, min_s)
        if parts:
            copies[b] = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
    return speed, copies


def _accuracy(out: list, labels: np.ndarray, threshold: float) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Metrics of one backend's pipeline outputs, and its ROC curve thinned to at most 200 points."""
    ok = np.array([r.status == "ok" for r in out])
    scores = np.array([r.score if r.score is not None else np.nan for r in out])
    acc = M.summarize(labels[ok], scores[ok], threshold)
    acc["unreadable"] = int((~ok).sum())
    fpr, tpr, _ = M.roc_curve(labels[ok], scores[ok])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(200, len(fpr))).astype(int))
    return acc, {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def _params(be: Backend) -> int | None:
    n = getattr(be, "n_params", None)
    if n is not None:
        return int(n)
    try:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(be.path), load_external_data=False)
        return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))
    except Exception:  # noqa: BLE001 - the onnx package is optional here; an unknown count is fine
        return None


@dataclass
class _Job:
    model: str
    path: Path
    kind: str
    backend: str


def _model_label(path: Path, arch: str) -> str:
    """Row name: the arch for ``weights/<arch>/``'s standard files, else what tells this artifact apart."""
    if path.resolve() == BUNDLED_MODEL:
        return f"default ({arch})"
    stem = path.name.split(".")[0]  # xception.fp16.onnx and xception.plan belong to xception.onnx's row group
    # Standard file names take their run folder's name (e.g. an imported baseline); other names are their own.
    source = path.parent.name if stem in (arch, "best", "last") else stem
    return arch if source in (arch, "") else f"{source} ({arch})"


def run_bench(
    artifacts: Iterable[str | Path],
    data: str | Path | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32),
    backends: Sequence[str] | None = None,
    warmup_s: float = 0.5,
    min_runs: int = 10,
    min_s: float = 1.0,
    e2e_images: int = 128,
    threads: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Benchmarks every artifact on every backend that can run it here; see the module docstring for the result.

    Args:
        artifacts: checkpoints, ONNX files (FP32/FP16/INT8) and engines.
        data: folder with ``real/`` and ``fake/``: accuracy (and end-to-end speed) from each backend's outputs.
        batch_sizes: compute-only batch sizes.
        backends: restrict to these backend names.
        warmup_s / min_runs / min_s: timing protocol per batch size.
        e2e_images: generated images for the end-to-end pass when no ``data`` is given.
        threads: decode threads for the end-to-end pass.
        progress: progress bar (default: on a terminal).
    """
    from dfx.engine.artifact import read_onnx_info
    from dfx.engine.sidecar import EngineSidecar

    known = list(dict.fromkeys(b for group in BACKENDS_FOR.values() for b in group))
    unknown = [b for b in backends or () if b not in known]
    if unknown:  # a typo must not turn into an empty table and exit 0
        raise DfxError(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    jobs: list[_Job] = []
    for a in artifacts:
        path = Path(a)
        if not path.exists():
            raise DfxError(f"{path}: no such artifact")
        kind = artifact_kind(path)
        if kind == "checkpoint":
            from dfx.training.checkpoint import read_checkpoint_info

            arch = read_checkpoint_info(path).arch
        elif kind == "engine":
            arch = EngineSidecar.load(path).info.arch
        else:
            arch = read_onnx_info(path).arch
        model = _model_label(path, arch)
        jobs += [_Job(model, path, kind, b) for b in BACKENDS_FOR[kind] if not backends or b in backends]

    files, labels = ([], None)
    tmp = None
    if data is not None:
        if not Path(data).is_dir():
            raise DfxError(f"--data {data}: no such folder (give one with real/ and fake/ inside)")
        items = labelled_images(Path(data))
        files, labels = [p for p, _ in items], np.array([y for _, y in items])
    env = _environment()
    rows: list[dict[str, Any]] = []
    roc: dict[str, dict[str, list[float]]] = {}
    bar = progress_bar(total=len(jobs), desc="benchmarking", unit="run", enabled=progress)
    try:
        for job in jobs:
            base = {"model": job.model, "artifact": str(job.path), "kind": job.kind, "backend": job.backend,
                    "size_mb": round(job.path.stat().st_size / 1e6, 3)}
            try:
                be = _open(job.path, job.backend)
            except (DfxError, ImportError) as e:
                rows.append(base | {"status": "skipped", "reason": str(e), "device": None, "batch_size": None})
                bar.update(1)
                continue
            try:
                with be:
                    base |= {"device": be.device, "params": _params(be)}
                    speed, copies = _speed(be, batch_sizes, warmup_s, min_runs, min_s)
                    if not files and tmp is None:
                        tmp = tempfile.TemporaryDirectory(prefix="dfx-bench-")
                    e2e_files = files or _generated_files(e2e_images, be.info.spec.input_size, Path(tmp.name))
                    e2e_batch = max(speed)
                    t0 = time.perf_counter()
                    # Labelled face crops, as training evaluates them: whole images, whatever the record's crop.
                    out = list(score_files(be, e2e_files, e2e_batch, threads, faces="off"))
                    e2e = len(out) / (time.perf_counter() - t0)
                    acc = None
                    if labels is not None:
                        acc, roc[f"{job.model}|{job.backend}"] = _accuracy(out, labels, be.info.threshold)
                    for b, t in speed.items():
                        rows.append(base | {
                            "status": "ok", "reason": "", "batch_size": b,
                            "latency_ms": {"mean": t.mean_ms, "p50": t.p50_ms, "p90": t.p90_ms, "p99": t.p99_ms},
                            "runs": t.runs, "ms_per_image_p50": t.ms_per_image_p50, "images_per_s": t.images_per_s,
                            "device_ms": copies.get(b),
                            "e2e_images_per_s": e2e if b == e2e_batch else None,
                            "e2e_vs_compute": e2e / t.images_per_s if b == e2e_batch else None,
                            "accuracy": acc})
            except Exception as e:  # noqa: BLE001 - one broken artifact must not end the whole benchmark
                log.warning("%s on %s failed: %s", job.path, job.backend, e)
                rows.append(base | {"status": "error", "reason": f"{type(e).__name__}: {e}", "batch_size": None})
            bar.update(1)
    finally:
        bar.close()
        if tmp is not None:
            tmp.cleanup()
    _ratios(rows)
    return {"schema_version": SCHEMA_VERSION, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": env,
            "settings": {"batch_sizes": list(batch_sizes), "warmup_s": warmup_s, "min_runs": min_runs, "min_s": min_s,
                         "data": str(data) if data else None, "e2e_images": None if data else e2e_images},
            "rows": rows, "roc": roc}


def _device_class(backend: str) -> str:
    return "gpu" if backend in GPU_BACKENDS else "cpu"


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Speed-ups vs eager (same model, batch size, device class) and INT8 vs FP32, from this run's rows only."""
    ok = [r for r in rows if r["status"] == "ok"]
    eager = {(r["model"], r["batch_size"], _device_class(r["backend"])): r["images_per_s"]
             for r in ok if r["backend"].startswith("pytorch-eager")}
    fp32 = {(r["model"], r["batch_size"]): r["images_per_s"] for r in ok
            if r["kind"] == "onnx" and r["backend"] == "onnxruntime-cpu"}
    for r in rows:
        r.setdefault("speedup_vs_eager", None)
        r.setdefault("int8_vs_fp32", None)
        if r["status"] != "ok":
            continue
        base = eager.get((r["model"], r["batch_size"], _device_class(r["backend"])))
        r["speedup_vs_eager"] = r["images_per_s"] / base if base else None
        if r["kind"] == "onnx-int8" and (r["model"], r["batch_size"]) in fp32:
            r["int8_vs_fp32"] = r["images_per_s"] / fp32[(r["model"], r["batch_size"])]

