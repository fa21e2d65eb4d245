"""Pipeline benchmark: model-only vs decode-only (threads and processes) vs ``dfx-infer`` end to end.

Measured in one run on the same files, per model:
- model-only: ``backend.infer`` on batches already in memory (the compute bound);
- decode-only, once with decode threads and once with decode processes: the pipeline with a backend that
  returns at once (decode + preprocess + batching bound); optionally also on the files upscaled to ``--large`` px;
- end to end: :func:`dfx.engine.scan.scan` — what ``dfx-infer FILES -o scores.csv`` does, with ``--backend`` and
  ``--decode``;
- first batch: seconds from a loaded model to its first scored batch (warm-up, workers' start, one batch);
- the ratio e2e ÷ min(model-only, best decode-only): how close end to end comes to its slower stage;
- end to end with faces on (``--faces on``: detect, crop and score each face; the artifact's crop, else the
  default one) and its ratio to faces off, in the same round.

Every other figure scores whole images (``--faces off``), whatever the artifact's record says.

Throughput does not depend on the weights, so models without a trained ONNX under ``--weights`` are exported
with random weights at their default input size (and to FP16 as well when the backend is a GPU one). Run from
the repository root::

    python -m dfx.benchmarks.pipeline_throughput --data ../shared/data/mesonet-deepfake/validate \\
        --out benchmarks/results/pipeline-cpu
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dfx.benchmarks.report import save_result
from dfx.engine.backends.base import Backend
from dfx.engine.decode_pool import DECODE_MODES, default_workers, resolve_decode_mode
from dfx.engine.inputs import list_images
from dfx.engine.pipeline import score_files
from dfx.engine.scan import scan
from dfx.engine.select import BACKEND_CHOICES, fp16_sibling, open_backend

__all__ = ["measure_pipeline", "MODELS"]

MODELS = ("meso4", "mesoinception4", "efficientnet_b0", "xception", "vit_b16")


class _Instant(Backend):
    """Returns zeros immediately: isolates decode, preprocess and batching."""

    name = "none"

    def __init__(self, info):
        self.info, self.device = info, "none"

    def activate(self) -> None:
        pass

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros(len(batch), np.float32)


def _onnx_for(model: str, weights: Path, tmp: Path, fp16: bool) -> Path:
    trained = weights / model / f"{model}.onnx"
    onnx = trained if trained.is_file() else _random_onnx(model, tmp)
    if fp16 and fp16_sibling(onnx) is None:
        from dfx.export.fp16 import convert_fp16

        convert_fp16(onnx, onnx.with_suffix(".fp16.onnx"))
    return onnx


def _random_onnx(model: str, tmp: Path) -> Path:
    import torch

    from dfx.engine.artifact import ModelInfo
    from dfx.export.onnx_export import export_onnx
    from dfx.training import create_model, get_entry

    torch.manual_seed(0)
    spec = get_entry(model).default_spec
    net, kwargs = create_model(model, spec, pretrained=False)
    return export_onnx(net, ModelInfo(arch=model, spec=spec, model_kwargs=kwargs), tmp / f"{model}.onnx")


def _upscaled(files: list[Path], size: int, folder: Path) -> list[Path]:
    """JPEG copies of ``files`` at size × size (quality 95): large photos for the decode-only figures."""
    from PIL import Image

    out = []
    for i, f in enumerate(files):
        dst = folder / f"{i:05d}.jpg"
        with Image.open(f) as img:
            img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(dst, quality=95)
        out.append(dst)
    return out


def _decode_rate(info, files: list[Path], batch_size: int, workers: int, mode: str) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in score_files(_Instant(info), files, batch_size, workers, decode=mode, faces="off"))
    return n / (time.perf_counter() - t0)


def _first_batch_s(onnx: Path, files: list[Path], backend: str, batch_size: int, workers: int, decode: str,
                   fp16: bool) -> float:
    """Seconds from a loaded model (a fresh session) to its first scored batch."""
    with open_backend(onnx, backend, fp16=fp16) as be:
        t0 = time.perf_counter()
        rows = score_files(be, files[: batch_size * 2], batch_size, workers, decode=decode, faces="off")
        next(rows)
        elapsed = time.perf_counter() - t0
        rows.close()
    return elapsed


def measure_pipeline(onnx: Path, files: list[Path], batch_size: int, threads: int, rounds: int = 5,
                     backend: str = "onnxruntime-cpu", decode: str = "auto", large: list[Path] | None = None,
                     fp16: bool = True) -> dict:
    """Throughput (img/s) of every stage on ``files``, measured in ``rounds`` interleaved rounds.

    Each round runs every stage back to back and the ratios are taken within the round: a noisy neighbour on a
    shared machine then slows all stages of that round, not one stage of the whole measurement. Reported: the
    median round's values, and the lowest and highest ratio seen.

    Args:
        threads: decode workers (threads or processes).
        decode: the decode mode of the end-to-end run.
        large: the same images, larger, for decode-only figures on big photos.
    """
    decode = resolve_decode_mode(decode)
    first = _first_batch_s(onnx, files, backend, batch_size, threads, decode, fp16)
    with open_backend(onnx, backend, fp16=fp16) as be:
        ran, device, info = be.path.name, f"{be.name} ({be.device})", be.info
        h, w = info.spec.input_size
        x = np.random.default_rng(0).normal(size=(batch_size, 3, h, w)).astype(np.float32)
        be.prepare(batch_size)
        n_batches = max(1, len(files) // batch_size)

        def model_only() -> float:
            t0 = time.perf_counter()
            for _ in range(n_batches):
                be.infer(x)
            return n_batches * batch_size / (time.perf_counter() - t0)

        per_round = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(rounds):
                r = {"model_only": model_only()}
                for mode in ("threads", "processes"):
                    r[f"decode_{mode}"] = _decode_rate(info, files, batch_size, threads, mode)
                    if large:
                        r[f"decode_{mode}_large"] = _decode_rate(info, large, batch_size, threads, mode)
                for faces in ("off", "on"):
                    s = scan(files, engine=onnx, backend=backend, output=f"{tmp}/scores{i}{faces}.csv",
                             batch_size=batch_size, threads=threads, progress=False, decode=decode, fp16=fp16,
                             faces=faces)
                    r["end_to_end" if faces == "off" else "end_to_end_faces"] = (s.scored + s.failed) / s.seconds
                r["faces_vs_off"] = r["end_to_end_faces"] / r["end_to_end"]
                r["decode_only"] = max(r["decode_threads"], r["decode_processes"])
                r["e2e_vs_model"] = r["end_to_end"] / r["model_only"]
                r["e2e_vs_decode"] = r["end_to_end"] / r["decode_only"]
                r["e2e_vs_slower_stage"] = r["end_to_end"] / min(r["model_only"], r["decode_only"])
                # Where both stages need the same cores, an image costs 1/model + 1/decode of the machine: the
                # best end to end possible there is the harmonic combination.
                r["e2e_vs_shared_cpu_limit"] = r["end_to_end"] * (1.0 / r["model_only"] + 1.0 / r["decode_only"])
                per_round.append(r)
    out = {k: float(np.median([r[k] for r in per_round])) for k in per_round[0]}
    for k in ("e2e_vs_model", "e2e_vs_decode", "e2e_vs_slower_stage", "e2e_vs_shared_cpu_limit", "faces_vs_off"):
        out[f"{k}_range"] = [min(r[k] for r in per_round), max(r[k] for r in per_round)]
    out["shared_cpu_limit"] = 1.0 / (1.0 / out["model_only"] + 1.0 / out["decode_only"])
    out |= {"first_batch_s": first, "artifact": ran, "backend": device, "decode": decode, "rounds": per_round}
    return out


def _markdown(result: dict) -> str:
    env, s = result["machine"], result["settings"]
    gpus = ", ".join(env["gpus"]) or "no GPU"
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores; {gpus}; onnxruntime "
             f"{env['versions'].get('onnxruntime')}. {result['files']} files from {result['data']}"
             + (f" (decode-only also on {s['large']}-px JPEG copies)" if s["large"] else "")
             + f"; batch {s['batch_size']}; {s['workers']} decode workers; end to end with --backend "
               f"{s['backend']} --decode {s['decode']}; median of {s['rounds']} interleaved rounds (ratios taken "
               "within each round; lowest–highest in brackets).", ""]
    large = " | decode threads / processes, large img/s" if s["large"] else ""
    lines += [f"| model (file run) | backend | model-only img/s | decode threads / processes img/s{large} "
              "| e2e img/s | e2e ÷ min(model, decode) | first batch s | shared-CPU limit img/s (e2e ÷ it) "
              "| e2e faces on img/s (÷ off) |",
              "|" + "---|" * (10 if s["large"] else 9)]

    def ratio(r: dict, k: str) -> str:
        lo, hi = r[f"{k}_range"]
        return f"{r[k]:.2f} ({lo:.2f}–{hi:.2f})"

    for m, r in result["models"].items():
        big = f" | {r['decode_threads_large']:.0f} / {r['decode_processes_large']:.0f}" if s["large"] else ""
        lines.append(f"| {m} ({r['artifact']}) | {r['backend']} | {r['model_only']:.1f} | "
                     f"{r['decode_threads']:.0f} / {r['decode_processes']:.0f}{big} | {r['end_to_end']:.1f} | "
                     f"{ratio(r, 'e2e_vs_slower_stage')} | {r['first_batch_s']:.2f} | {r['shared_cpu_limit']:.1f} "
                     f"({ratio(r, 'e2e_vs_shared_cpu_limit')}) | {r['end_to_end_faces']:.1f} "
                     f"({ratio(r, 'faces_vs_off')}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of images (searched recursively)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--weights", default=Path("weights"), type=Path)
    p.add_argument("--backend", default="onnxruntime-cpu", choices=BACKEND_CHOICES)
    p.add_argument("--decode", default="auto", choices=DECODE_MODES, help="decode mode of the end-to-end run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=default_workers(), help="decode workers")
    p.add_argument("--limit", type=int, default=1000, help="use at most this many files")
    p.add_argument("--large", type=int, default=0, help="also decode copies upscaled to this size (px)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model (medians are reported)")
    p.add_argument("--no-fp16", dest="fp16", action="store_false", help="on a GPU, run the FP32 ONNX")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline-cpu"))
    args = p.parse_args()
    files = list_images(args.data)[: args.limit]
    from dfx.benchmarks.bench import _environment

    result = {"machine": _environment(), "data": str(args.data), "files": len(files),
              "settings": {"batch_size": args.batch_size, "workers": args.threads, "backend": args.backend,
                           "decode": args.decode, "rounds": args.rounds, "large": args.large, "fp16": args.fp16},
              "models": {}}
    gpu = args.backend in ("onnxruntime-cuda", "tensorrt") or bool(result["machine"]["gpus"])
    with tempfile.TemporaryDirectory() as tmp:
        large = _upscaled(files, args.large, Path(tmp)) if args.large else None
        for model in args.models.split(","):
            onnx = _onnx_for(model, args.weights, Path(tmp), fp16=gpu and args.fp16)
            r = measure_pipeline(onnx, files, args.batch_size, args.threads, args.rounds, args.backend, args.decode,
                                 large, args.fp16)
            result["models"][model] = r
            print(f"{model} ({r['artifact']} on {r['backend']}): model-only {r['model_only']:.1f}, decode-only "
                  f"threads {r['decode_threads']:.0f} / processes {r['decode_processes']:.0f}, end-to-end "
                  f"{r['end_to_end']:.1f} img/s (x{r['e2e_vs_slower_stage']:.2f} of the slower stage); first batch "
                  f"{r['first_batch_s']:.2f} s; faces on {r['end_to_end_faces']:.1f} img/s "
                  f"(x{r['faces_vs_off']:.2f})", flush=True)
    save_result(args.out, result, _markdown(result))


if __name__ == "__main__":
    main()
