"""Streaming result writers: a terminal table, CSV, JSON Lines and JSON.

Schema (stable; every format has these fields in this order):
``path`` (str), ``score`` (P(fake), float in [0, 1], empty/null when not scored), ``label`` (``fake`` |
``real``, empty/null when not scored), ``status`` (``ok`` or an error status), ``error`` (message, empty when ok).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import IO

from .errors import DfxError
from .pipeline import Row

__all__ = ["FIELDS", "FORMATS", "record", "open_writer", "format_for", "already_scored", "appends"]

FIELDS = ("path", "score", "label", "status", "error")
FORMATS = ("table", "csv", "jsonl", "json")
_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def format_for(output: str | None, fmt: str | None) -> str:
    """The output format: explicit ``fmt``, else from the output suffix, else ``table`` on stdout."""
    if fmt:
        if fmt not in FORMATS:
            raise DfxError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "table"
    suffix = Path(output).suffix.lower()
    if suffix not in _SUFFIX:
        raise DfxError(f"cannot tell the format of {output}; name it .csv, .jsonl or .json, or pass --format")
    return _SUFFIX[suffix]


def record(row: Row) -> dict:
    """A row as the JSON formats write it (score rounded to 6 decimals, None when not scored)."""
    return {"path": row.path, "score": None if row.score is None else round(row.score, 6), "label": row.label,
            "status": row.status, "error": row.error}


class _Writer:
    def __init__(self, f: IO[str]):
        self.f = f
        self.owns_file = False

    def write(self, row: Row) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.flush()
        if self.owns_file:
            self.f.close()


class _Table(_Writer):
    def __init__(self, f: IO[str]):
        super().__init__(f)
        f.write(f"{'score':>8}  {'label':<5}  {'status':<13}  path\n")

    def write(self, row: Row) -> None:
        score = "-" if row.score is None else f"{row.score:.4f}"
        tail = f"  ({row.error})" if row.error else ""
        self.f.write(f"{score:>8}  {row.label or '-':<5}  {row.status:<13}  {row.path}{tail}\n")


class _Csv(_Writer):
    def __init__(self, f: IO[str], header: bool):
        super().__init__(f)
        self.w = csv.writer(f, lineterminator="\n")
        if header:
            self.w.writerow(FIELDS)

    def write(self, row: Row) -> None:
        r = record(row)
        self.w.writerow(["" if r[k] is None else r[k] for k in FIELDS])


class _Jsonl(_Writer):
    def write(self, row: Row) -> None:
        self.f.write(json.dumps(record(row)) + "\n")


class _Json(_Writer):
    """A JSON array, written incrementally: rows are not lost on a crash, but the file closes only at the end."""

    def __init__(self, f: IO[str]):
        super().__init__(f)
        self.first = True
        f.write("[")

    def write(self, row: Row) -> None:
        self.f.write(("\n" if self.first else ",\n") + json.dumps(record(row)))
        self.first = False

    def close(self) -> None:
        self.f.write("\n]\n")
        super().close()


def _trim_partial_line(path: Path) -> None:
    """Drops a last line cut short by a crash, so appended rows start on a fresh line."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(max(0, size - 65536))
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        f.truncate(size - len(tail) + cut + 1 if cut >= 0 else 0)


def already_scored(output: Path, fmt: str) -> set[str]:
    """Paths with a row in an existing CSV/JSONL output (for ``--resume``); a torn last line is dropped."""
    if not output.is_file():
        return set()
    if fmt not in ("csv", "jsonl"):
        raise DfxError("--resume needs a streamable output: use a .csv or .jsonl file")
    _trim_partial_line(output)
    with open(output, newline="") as f:
        if fmt == "csv":
            return {r["path"] for r in csv.DictReader(f)}
        return {json.loads(line)["path"] for line in f if line.strip()}


def appends(output: str | None, resume: bool) -> bool:
    """True when a run writes after rows already in ``output`` (``--resume`` on a non-empty file)."""
    return bool(resume and output and os.path.isfile(output) and os.path.getsize(output) > 0)


def open_writer(output: str | None, fmt: str, append: bool = False, stdout: IO[str] | None = None) -> _Writer:
    """A writer for ``fmt`` on ``output`` (stdout when None); ``append`` continues a file (see :func:`appends`)."""
    if output is None:
        f: IO[str] = stdout or sys.stdout
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        f = open(output, "a" if append else "w", encoding="utf-8", newline="")
    writer = {"table": lambda: _Table(f), "csv": lambda: _Csv(f, header=not append), "jsonl": lambda: _Jsonl(f),
              "json": lambda: _Json(f)}[fmt]()
    writer.owns_file = output is not None
    return writer
