"""``dfx-bench``: latency, throughput and accuracy per model x backend, side by side."""

from __future__ import annotations

import json

import click

from dfx.cli_common import DfxCommand, common_options, run_cli, setup_logging
from dfx.engine.artifact import atomic_write_text
from dfx.engine.errors import DfxError

__all__ = ["main"]

MAX_BATCH = 4096  # beyond any useful benchmark batch; a typo there would try to allocate terabytes


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise DfxError(f"--batch-sizes takes comma-separated integers, got {text!r}") from e
    if not values or min(values) < 1 or max(values) > MAX_BATCH:
        raise DfxError(f"--batch-sizes takes positive integers up to {MAX_BATCH}, got {text!r}")
    return values


@click.command(cls=DfxCommand, epilog="""\b
Examples:
  dfx-bench                                 # everything under weights/ and the bundled model
  dfx-bench --models meso4,xception --data ../shared/data/stylegan2-ffhq/validate --batch-sizes 1,8,32
  dfx-bench --artifacts weights/xception/xception.plan weights/xception/xception.onnx \\
            --output bench.json --markdown bench.md --plot bench.png
  dfx-bench --artifacts weights/meso4/best.safetensors weights/meso4/meso4.onnx --data faces/validate""")
@click.option("--artifacts", multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoints, ONNX files (FP32/FP16/INT8) and engines. Repeatable; several may follow one flag.")
@click.argument("more_artifacts", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--models", help="Comma-separated models; their artifacts are found under --weights-dir.")
@click.option("--weights-dir", default="weights", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", type=click.Path(file_okay=False), help="Folder with real/ and fake/ for accuracy.")
@click.option("--batch-sizes", default="1,8,32", show_default=True)
@click.option("--backends", help="Comma-separated subset of backends to run.")
@click.option("--min-runs", type=int, default=10, show_default=True)
@click.option("--min-seconds", type=float, default=1.0, show_default=True)
@click.option("--warmup-seconds", type=float, default=0.5, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the JSON result here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Write a Markdown table here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG plot here.")
@click.option("--progress/--no-progress", default=None)
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, exists=True),
              help="Render the table, --markdown and --plot of a saved --output instead of measuring.")
@common_options
@run_cli
def main(artifacts, more_artifacts, models, weights_dir, data, batch_sizes, backends, min_runs, min_seconds,
         warmup_seconds, output, markdown_path, plot_path, progress, from_json, verbose, quiet) -> None:
    """Benchmark speed and accuracy of every model and backend available here."""
    from .report import markdown, plot, table

    setup_logging(verbose, quiet)
    if plot_path:
        import matplotlib  # noqa: F401 - fail (naming the extra) before minutes of measuring, not after
    if from_json:
        try:
            result = json.loads(open(from_json).read())
            result["rows"], result["environment"]  # noqa: B018 - the keys every report needs
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise DfxError(f"--from-json {from_json}: not a dfx-bench result ({type(e).__name__}: {e})") from e
    else:
        result = _measure(list(artifacts) + list(more_artifacts), models, weights_dir, data, batch_sizes, backends,
                          min_runs, min_seconds, warmup_seconds, progress)
    click.echo(table(result))
    if output and not from_json:
        atomic_write_text(output, json.dumps(result, indent=1))
    if markdown_path:
        atomic_write_text(markdown_path, markdown(result))
    if plot_path:
        plot(result, plot_path)


def _measure(paths, models, weights_dir, data, batch_sizes, backends, min_runs, min_seconds, warmup_seconds,
             progress) -> dict:
    from .bench import discover_artifacts, run_bench

    if not paths:
        paths = discover_artifacts(models.split(",") if models else None, weights_dir)
    elif models:
        raise DfxError("give either --artifacts or --models, not both")
    return run_bench(paths, data=data, batch_sizes=_ints(batch_sizes),
                     backends=backends.split(",") if backends else None, warmup_s=warmup_seconds,
                     min_runs=min_runs, min_s=min_seconds, progress=progress)
