"""Pipeline benchmark (issue: the lean runtime): model-only vs decode-only vs ``dfx-infer`` end to end.

Measured in one run on the same files, per model:
- model-only: ``backend.infer`` on batches already in memory (the compute bound);
- decode-only: the same pipeline with a backend that returns at once (decode + preprocess + batching bound);
- end to end: :func:`dfx.engine.scan.scan` — what ``dfx-infer FILES -o scores.csv`` does.

Throughput does not depend on the weights, so models without a trained checkpoint are exported with random
weights at their default input size. Run from the repository root::

    python -m dfx.benchmarks.pipeline_throughput --data ../shared/data/mesonet-deepfake/validate \\
        --out benchmarks/results/pipeline-cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dfx.engine.backends.base import Backend
from dfx.engine.inputs import list_images
from dfx.engine.pipeline import default_threads, score_files
from dfx.engine.scan import scan
from dfx.engine.select import open_backend

__all__ = ["measure_pipeline"]


class _Instant(Backend):
    """Returns zeros immediately: isolates decode, preprocess and batching."""

    name = "none"

    def __init__(self, info):
        self.info, self.device = info, "none"

    def activate(self) -> None:
        pass

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros(len(batch), np.float32)


def _onnx_for(model: str, weights: Path, tmp: Path) -> Path:
    trained = weights / model / f"{model}.onnx"
    if trained.is_file():
        return trained
    import torch

    from dfx.engine.artifact import ModelInfo
    from dfx.export.onnx_export import export_onnx
    from dfx.training import create_model, get_entry

    torch.manual_seed(0)
    spec = get_entry(model).default_spec
    net, kwargs = create_model(model, spec, pretrained=False)
    return export_onnx(net, ModelInfo(arch=model, spec=spec, model_kwargs=kwargs), tmp / f"{model}.onnx")


def measure_pipeline(onnx: Path, files: list[Path], batch_size: int, threads: int, repeats: int = 2) -> dict:
    """Best-of-``repeats`` throughput (img/s) of the three stages on ``files``."""
    with open_backend(onnx, "onnxruntime-cpu") as be:
        h, w = be.info.spec.input_size
        x = np.random.default_rng(0).normal(size=(batch_size, 3, h, w)).astype(np.float32)
        be.infer(x)
        n_batches = max(1, len(files) // batch_size)

        def model_only() -> float:
            t0 = time.perf_counter()
            for _ in range(n_batches):
                be.infer(x)
            return n_batches * batch_size / (time.perf_counter() - t0)

        def decode_only() -> float:
            t0 = time.perf_counter()
            n = sum(1 for _ in score_files(_Instant(be.info), files, batch_size, threads))
            return n / (time.perf_counter() - t0)

        model = max(model_only() for _ in range(repeats))
        decode = max(decode_only() for _ in range(repeats))
    e2e = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            s = scan(files, engine=onnx, backend="onnxruntime-cpu", output=f"{tmp}/scores{i}.csv",
                     batch_size=batch_size, threads=threads, progress=False)
            e2e = max(e2e, (s.scored + s.failed) / s.seconds)
    return {"model_only": model, "decode_only": decode, "end_to_end": e2e, "e2e_vs_model": e2e / model,
            "e2e_vs_decode": e2e / decode}


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of images (searched recursively)")
    p.add_argument("--models", default="meso4,efficientnet_b0,xception")
    p.add_argument("--weights", default=Path("weights"), type=Path)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--limit", type=int, default=512, help="use at most this many files")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline-cpu"))
    args = p.parse_args()
    files = list_images(args.data)[: args.limit]
    from dfx.benchmarks.bench import _environment

    result = {"machine": _environment(), "data": str(args.data), "files": len(files), "batch_size": args.batch_size,
              "decode_threads": args.threads, "node": platform.node(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            result["models"][model] = r = measure_pipeline(_onnx_for(model, args.weights, Path(tmp)), files,
                                                           args.batch_size, args.threads)
            print(f"{model}: model-only {r['model_only']:.1f} img/s, decode-only {r['decode_only']:.1f} img/s, "
                  f"end-to-end {r['end_to_end']:.1f} img/s (x{r['e2e_vs_model']:.2f} model, "
                  f"x{r['e2e_vs_decode']:.2f} decode)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    env = result["machine"]
    lines = [f"CPU: {env['cpu']}, {env['cores']} cores; onnxruntime {env['versions'].get('onnxruntime')}; "
             f"{len(files)} files from {args.data}; batch {args.batch_size}, {args.threads} decode threads", "",
             "| model | model-only img/s | decode-only img/s | dfx-infer end-to-end img/s | e2e / model "
             "| e2e / decode |",
             "|---|---|---|---|---|---|"]
    for m, r in result["models"].items():
        lines.append(f"| {m} | {r['model_only']:.1f} | {r['decode_only']:.1f} | {r['end_to_end']:.1f} | "
                     f"{r['e2e_vs_model']:.2f} | {r['e2e_vs_decode']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
