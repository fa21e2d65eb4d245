"""One progress-bar policy for every command: a tqdm bar on stderr on a terminal, silence in pipes."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool | None = None, leave: bool = True) -> Any:
    """A tqdm bar (disabled ones pass iterables through and ignore ``update``), so callers need no branches.

    Args:
        enabled: force on/off; None means "when stderr is a terminal".
    """
    from tqdm import tqdm

    on = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not on, leave=leave,
                dynamic_ncols=True)
