"""What every dfx command shares: logging to stderr and the one-line error convention (DESIGN.md, CLI)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from dfx.engine.errors import DfxError

__all__ = ["setup_logging", "run_cli"]


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Library code logs; the CLI shows INFO and above on stderr as plain lines."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("dfx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def run_cli(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a click callback: a :class:`DfxError` becomes one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DfxError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
