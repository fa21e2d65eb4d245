"""Input discovery: files and folders, optionally recursive, symlinks followed without loops."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .decode import is_image_path
from .errors import DfxError

__all__ = ["iter_inputs"]


def _walk(folder: Path, recursive: bool, seen_dirs: set[tuple[int, int]]) -> Iterator[Path]:
    try:
        st = folder.stat()
    except OSError:
        return
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:  # a symlink loop, or the same folder reached twice
        return
    seen_dirs.add(key)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(path, recursive, seen_dirs)
        elif is_image_path(path):
            yield path  # broken symlinks included: they get an 'unreadable' row rather than vanishing


def iter_inputs(paths: Iterable[str | Path], recursive: bool = False) -> Iterator[Path]:
    """Image files to score, yielded lazily and in a stable order, each once.

    Files named explicitly are always yielded (whatever their extension); folders contribute files with an
    image extension, descending into subfolders when ``recursive``.

    Raises:
        DfxError: when a named path does not exist.
    """
    paths = [Path(p) for p in paths]
    for p in paths:  # checked now, not on first iteration, so a typo fails before any output is written
        if not p.exists() and not p.is_symlink():
            raise DfxError(f"{p}: no such file or folder")
    return _iter(paths, recursive)


def _iter(paths: list[Path], recursive: bool) -> Iterator[Path]:
    seen_dirs: set[tuple[int, int]] = set()
    # One folder never yields a file twice (seen_dirs stops re-walks); only several inputs can overlap, so the
    # per-file set — the one thing that grows with the collection — is kept only then.
    seen_files: set[str] | None = set() if len(paths) > 1 else None
    for p in paths:
        for f in _walk(p, recursive, seen_dirs) if p.is_dir() else iter([p]):
            if seen_files is not None:
                key = os.path.normpath(str(f))
                if key in seen_files:
                    continue
                seen_files.add(key)
            yield f
