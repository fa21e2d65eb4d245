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
from dfx.engine.pipeline import default_workers, score_files
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


def measure_pipeline(onnx: Path, files: list[Path], batch_size: int, threads: int, rounds: int = 5) -> dict:
    """Throughput (img/s) of the three stages on ``files``, measured in ``rounds`` interleaved rounds.

    Each round runs model-only, decode-only and end to end back to back, and the ratios are taken within the
    round: a noisy neighbour on a shared machine then slows all three stages of that round, not one stage of
    the whole measurement. Reported: the median round's values, and the lowest and highest ratio seen.
    """
    with open_backend(onnx, "onnxruntime-cpu") as be:
        info = be.info
        h, w = info.spec.input_size
        x = np.random.default_rng(0).normal(size=(batch_size, 3, h, w)).astype(np.float32)
        be.infer(x)
        n_batches = max(1, len(files) // batch_size)

        def model_only() -> float:
            t0 = time.perf_counter()
            for _ in range(n_batches):
                be.infer(x)
            return n_batches * batch_size / (time.perf_counter() - t0)

        per_round = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(rounds):
                model = model_only()
                t0 = time.perf_counter()
                n = sum(1 for _ in score_files(_Instant(info), files, batch_size, threads))
                decode = n / (time.perf_counter() - t0)
                s = scan(files, engine=onnx, backend="onnxruntime-cpu", output=f"{tmp}/scores{i}.csv",
                         batch_size=batch_size, threads=threads, progress=False)
                e2e = (s.scored + s.failed) / s.seconds
                per_round.append({"model_only": model, "decode_only": decode, "end_to_end": e2e,
                                  "e2e_vs_model": e2e / model, "e2e_vs_decode": e2e / decode})
    out = {k: float(np.median([r[k] for r in per_round])) for k in per_round[0]}
    for k in ("e2e_vs_model", "e2e_vs_decode"):
        out[f"{k}_range"] = [min(r[k] for r in per_round), max(r[k] for r in per_round)]
    # If decoding and inference each need the whole CPU, an image costs 1/model + 1/decode of it: end to end
    # cannot beat the harmonic combination unless one stage leaves cores idle that the other fills.
    out["shared_cpu_limit"] = 1.0 / (1.0 / out["model_only"] + 1.0 / out["decode_only"])
    out["rounds"] = per_round
    return out


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of images (searched recursively)")
    p.add_argument("--models", default="meso4,efficientnet_b0,xception")
    p.add_argument("--weights", default=Path("weights"), type=Path)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=default_workers())
    p.add_argument("--limit", type=int, default=1000, help="use at most this many files")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model (medians are reported)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline-cpu"))
    args = p.parse_args()
    files = list_images(args.data)[: args.limit]
    from dfx.benchmarks.bench import _environment

    result = {"machine": _environment(), "data": str(args.data), "files": len(files), "batch_size": args.batch_size,
              "decode_threads": args.threads, "rounds": args.rounds, "node": platform.node(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            result["models"][model] = r = measure_pipeline(_onnx_for(model, args.weights, Path(tmp)), files,
                                                           args.batch_size, args.threads, args.rounds)
            print(f"{model}: model-only {r['model_only']:.1f} img/s, decode-only {r['decode_only']:.1f} img/s, "
                  f"end-to-end {r['end_to_end']:.1f} img/s (x{r['e2e_vs_model']:.2f} model, "
                  f"x{r['e2e_vs_decode']:.2f} decode; medians of {args.rounds} rounds)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    env = result["machine"]
    lines = [f"CPU: {env['cpu']}, {env['cores']} cores; onnxruntime {env['versions'].get('onnxruntime')}; "
             f"{len(files)} files from {args.data}; batch {args.batch_size}, {args.threads} decode threads; "
             f"median of {args.rounds} interleaved rounds (ratios taken within each round; lowest–highest in "
             "brackets)", "",
             "| model | model-only img/s | decode-only img/s | dfx-infer end-to-end img/s | e2e / model "
             "| e2e / decode | shared-CPU limit img/s (e2e / limit) |",
             "|---|---|---|---|---|---|---|"]

    def ratio(r: dict, k: str) -> str:
        lo, hi = r[f"{k}_range"]
        return f"{r[k]:.2f} ({lo:.2f}–{hi:.2f})"

    for m, r in result["models"].items():
        lines.append(f"| {m} | {r['model_only']:.1f} | {r['decode_only']:.1f} | {r['end_to_end']:.1f} | "
                     f"{ratio(r, 'e2e_vs_model')} | {ratio(r, 'e2e_vs_decode')} | "
                     f"{r['shared_cpu_limit']:.1f} ({r['end_to_end'] / r['shared_cpu_limit']:.2f}) |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
