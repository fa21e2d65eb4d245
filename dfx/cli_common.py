"""What every dfx command shares: logging to stderr and the one-line error convention.

See docs/ARCHITECTURE.md, "CLI conventions".
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from dfx.engine.errors import DfxError

__all__ = ["DfxCommand", "threshold_option", "setup_logging", "common_options", "run_cli", "train_main",
           "export_main", "bench_main", "infer_main"]

# Top-level module of an optional dependency → the extra that installs it.
EXTRA_FOR = {"torch": "train", "torchvision": "train", "timm": "train", "safetensors": "train", "h5py": "train",
             "onnx": "export", "onnxconverter_common": "export", "onnxslim": "export", "matplotlib": "bench",
             "tensorrt": "gpu", "cuda": "gpu"}


def missing_extra(e: ImportError) -> str | None:
    """A one-line install hint when ``e`` is a missing optional dependency, else None."""
    top = (e.name or "").split(".")[0]
    return f"{top} is not installed; install it with: pip install 'dfx[{EXTRA_FOR[top]}]'" if top in EXTRA_FOR else None


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Library code logs; the CLI shows INFO and above on stderr as plain lines."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("dfx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class DfxCommand(click.Command):
    """A click command whose usage errors exit 1: dfx reserves 2 for "some inputs could not be scored"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.exit_code = 1
            raise


def threshold_option(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click callback: a P(fake) threshold must be a finite number in [0, 1] (click's FloatRange lets NaN in)."""
    from dfx.engine.artifact import check_threshold

    try:
        return None if value is None else check_threshold(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--version``, ``-v/--verbose`` and ``-q/--quiet`` for a command; its callback gets ``verbose``, ``quiet``."""
    import dfx

    fn = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")(fn)
    fn = click.option("-v", "--verbose", count=True, help="More detail (debug messages).")(fn)
    return click.version_option(dfx.__version__, "--version", message="%(prog)s (dfx) %(version)s")(fn)


def run_cli(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a click callback: a :class:`DfxError` becomes one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _terminate_like_ctrl_c()
        try:
            return fn(*args, **kwargs)
        except DfxError as e:
            # One line, whatever a library's message embedded (onnxruntime and torch write several).
            click.echo(f"error: {' '.join(str(e).split())}", err=True)
            sys.exit(1)
        except ImportError as e:
            if (hint := missing_extra(e)) is None:
                raise
            click.echo(f"error: {hint}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("terminated", err=True)
            sys.exit(143)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so clean-up runs (whole batches kept, workers stopped, shared
    memory released) instead of the process vanishing mid-write."""


def _terminate_like_ctrl_c() -> Any:
    """Makes SIGTERM raise :class:`Terminated`; returns the handler it replaced (None off the main thread)."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    if threading.current_thread() is not threading.main_thread():  # signals can only be set there
        return None
    return signal.signal(signal.SIGTERM, handler)


def _launch(module: str) -> None:
    # The heavy commands' modules import torch & co. at the top; a lean install must still get one clear line.
    try:
        main = importlib.import_module(module).main
    except ImportError as e:
        if (hint := missing_extra(e)) is None:
            raise
        click.echo(f"error: {hint}", err=True)
        sys.exit(1)
    main()


def train_main() -> None:
    """Console entry point of ``dfx-train``."""
    _launch("dfx.training.cli")


def export_main() -> None:
    """Console entry point of ``dfx-export``."""
    _launch("dfx.export.cli")


def infer_main() -> None:
    """Console entry point of ``dfx-infer``."""
    _launch("dfx.engine.cli")


def bench_main() -> None:
    """Console entry point of ``dfx-bench``."""
    _launch("dfx.benchmarks.cli")
