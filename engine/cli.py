"""``dfx-infer``: score folders of photos, face crops and videos; P(fake) per file (and per face) as a table, CSV,
JSONL or JSON."""

from __future__ import annotations

import sys

import click

from dfx.cli_common import DfxCommand, common_options, run_cli, setup_logging, threshold_option

from .decode_pool import DECODE_MODES, MAX_WORKERS, PROCESS_MIN_CPUS, default_workers
from .face_frontend import FACE_MODES
from .select import BACKEND_CHOICES
from .video import DEFAULT_FPS
from .writers import FACE_FIELDS, FIELDS, FORMATS

__all__ = ["main"]


@click.command(cls=DfxCommand, epilog=f"""\b
Examples:
  dfx-infer photos/                                  # bundled default model, best backend here
  dfx-infer photos/ --engine xception.plan           # TensorRT FP16 engine on the GPU
  dfx-infer photos/ a.jpg b.png --engine model.onnx --output scores.csv
  dfx-infer /data/crawl --recursive --output scores.jsonl --resume --batch-size 64
  dfx-infer clips/ --faces on --fps 2 -o videos.csv       # videos: one row per video (pip install 'dfx[video]')
  dfx-infer crops/ --faces off                       # folders of face crops: score each whole image

\b
Output fields: {', '.join(FIELDS)}. score = P(fake) in [0, 1]; label = fake when score >= the model's
threshold (--threshold overrides). When faces are detected: a row per face ({', '.join(FACE_FIELDS[5:])})
before each file's own row, whose score is its most suspicious face's. Exit status: 0 all scored, 2 some
files could not be scored (each still has a row with its status, e.g. no_face), 1 usage error.""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--engine", "engine", type=click.Path(dir_okay=False),
              help="Model: a .plan (TensorRT) or .onnx from dfx-export [default: the bundled model].")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write rows here (.csv, .jsonl, .json).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format [default: from --output, else table].")
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders.")
@click.option("--resume", is_flag=True, help="Skip files already in --output and append to it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output (otherwise refused).")
@click.option("-b", "--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--decode", type=click.Choice(DECODE_MODES), default="auto", show_default=True,
              help=f"Decode workers: threads, or processes over shared memory (scale with cores); auto = processes "
                   f"from {PROCESS_MIN_CPUS} usable CPUs on.")
@click.option("--threads", type=click.IntRange(1, MAX_WORKERS), help=f"Decode workers [default: {default_workers()}].")
@click.option("--fp16/--no-fp16", default=True, show_default=True,
              help="On a GPU, run NAME.fp16.onnx when it lies beside the NAME.onnx given.")
@click.option("--threshold", type=float, callback=threshold_option, help="P(fake) threshold for the label column.")
@click.option("--faces", type=click.Choice(FACE_MODES), default="auto", show_default=True,
              help="Find faces and score each, cropped as the model was trained: auto = when the model says it was "
                   "trained on face crops (the bundled model does); off = score whole images.")
@click.option("--fps", type=float, default=DEFAULT_FPS, show_default=True,
              help="Video frames sampled per second (videos are scored when faces are on).")
@click.option("--per-frame", is_flag=True, help="Videos: also write a row per face per sampled frame.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: on a terminal].")
@common_options
@run_cli
def main(inputs, engine, backend, output, fmt, recursive, resume, overwrite, batch_size, decode, threads, fp16,
         threshold, faces, fps, per_frame, progress, verbose, quiet) -> None:
    """Score face images in INPUTS (files and folders) for being deepfakes."""
    from .scan import scan

    setup_logging(verbose, quiet)
    summary = scan(inputs, engine=engine, backend=backend, output=output, fmt=fmt, recursive=recursive,
                   resume=resume, batch_size=batch_size, threads=threads, threshold=threshold, progress=progress,
                   decode=decode, fp16=fp16, overwrite=overwrite, faces=faces, fps=fps, per_frame=per_frame)
    if not quiet:
        click.echo(summary.line(), err=True)
    sys.exit(2 if summary.failed else 0)
