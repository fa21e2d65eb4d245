"""``dfx-export``: checkpoint → ONNX, FP16 ONNX, TensorRT engine and CPU INT8, each verified."""

from __future__ import annotations

from pathlib import Path

import click

from dfx.cli_common import DfxCommand, common_options, run_cli, setup_logging
from dfx.engine.errors import DfxError

from .onnx_export import onnx_module

__all__ = ["main"]


@click.command(cls=DfxCommand, epilog="""\b
Examples:
  dfx-export --model xception --fp16            # weights/xception/best → xception.onnx, .fp16.onnx, .plan
  dfx-export --checkpoint runs/x/best.safetensors --out build/
  dfx-export --model meso4 --int8 --calib ../shared/data/mesonet-deepfake/validate
  dfx-export --model vit_b16 --fp16 --batch-sizes 1,32,128 --no-engine
  dfx-export --onnx build/xception.onnx --engine   # (re)build the engine on the GPU machine
  dfx-export --model meso4 --fp16 --calibrate faces/validate --threshold-policy fpr=0.01""")
@click.option("--model", help="Export weights/<model>/best.safetensors (where dfx-train writes by default).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A dfx-train checkpoint (.safetensors).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Start from a dfx ONNX instead.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: beside the source].")
@click.option("--fp16", is_flag=True, help="Also write NAME.fp16.onnx (FP16 compute, FP32 I/O).")
@click.option("--engine/--no-engine", default=None,
              help="Build a TensorRT engine (implies --fp16) [default: when --fp16 and a GPU with TensorRT].")
@click.option("--int8", is_flag=True, help="Also write NAME.int8.onnx for the CPU (needs --calib).")
@click.option("--calib", type=click.Path(file_okay=False), help="Calibration images (real/ and fake/ for AUC).")
@click.option("--batch-sizes", default="1,32,128", show_default=True, help="Engine profile MIN,OPT,MAX.")
@click.option("--verify-data", type=click.Path(file_okay=False), help="Images to verify on.")
@click.option("--simplify", is_flag=True, help="Simplify the graph with onnxslim (verified again).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--workspace-gib", type=float, default=4.0, show_default=True)
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True)
@click.option("--calibrate", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Fit a temperature on the real/ and fake/ images here (repeatable) and store it in the artifacts: "
                   "scores become calibrated probabilities.")
@click.option("--threshold-policy", default="eer", show_default=True,
              help="With --calibrate: the threshold on calibrated scores — eer, fpr=<rate> (e.g. fpr=0.01) or f1.")
@common_options
@run_cli
def main(model, checkpoint, onnx_path, out, verbose, quiet, **opts) -> None:
    """Turn a training checkpoint into verified deployable artifacts."""
    setup_logging(verbose, quiet)
    onnx_module()  # every export needs onnx: on a lean install, name the extra before anything else fails
    if sum(x is not None for x in (model, checkpoint, onnx_path)) != 1:
        raise DfxError("give exactly one of --model, --checkpoint or --onnx")
    if model:
        from dfx.training.trainer import default_out_dir

        checkpoint = default_out_dir(model) / "best.safetensors"
        if not checkpoint.is_file():
            raise DfxError(f"{checkpoint} does not exist; train it with dfx-train {model} or pass --checkpoint")
    from .build import export_model

    result = export_model(checkpoint=checkpoint, onnx=onnx_path, out_dir=out, **opts)
    for notice in result.notices:
        click.echo(f"note: {notice}", err=True)
    for kind, path in result.artifacts.items():
        click.echo(f"{kind:6s} {path}  ({Path(path).stat().st_size / 1e6:.2f} MB)")
