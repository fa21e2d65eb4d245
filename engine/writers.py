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
from .inputs import path_key
from .pipeline import Row

__all__ = ["FIELDS", "FORMATS", "record", "printable", "open_writer", "format_for", "already_scored", "appends"]

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


def printable(path: str) -> str:
    """A path for a terminal: bytes that are not UTF-8 (kept as surrogates by Python) and control characters
    (a newline in a file name would split a table row) shown as escapes."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def record(row: Row) -> dict:
    """A row as the JSON formats write it (score rounded to 6 decimals, None when not scored)."""
    return {"path": row.path, "score": None if row.score is None else round(row.score, 6), "label": row.label,
            "status": row.status, "error": row.error}


class _Writer:
    def __init__(self, f: IO[str]):
        self.f = f
        self.owns_file = False
        self.closed = False

    def write(self, row: Row) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        """Flushes and closes (the file, when the writer opened it); a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        try:
            self.flush()
        finally:
            if self.owns_file:
                self.f.close()


class _Table(_Writer):
    def __init__(self, f: IO[str]):
        super().__init__(f)
        f.write(f"{'score':>8}  {'label':<5}  {'status':<13}  path\n")

    def write(self, row: Row) -> None:
        score = "-" if row.score is None else f"{row.score:.4f}"
        tail = f"  ({row.error})" if row.error else ""
        self.f.write(f"{score:>8}  {row.label or '-':<5}  {row.status:<13}  {printable(row.path)}{tail}\n")


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
        if not self.closed:
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
    """Files with a row in an existing CSV/JSONL output (for ``--resume``), as :func:`path_key` keys.

    A torn last line (a crash mid-write) is dropped; any other line that is not a row of this schema (a foreign
    header, garbage, a record torn across lines) stops the resume with its line number instead of guessing.
    """
    if not output.is_file():
        return set()
    if fmt not in ("csv", "jsonl"):
        raise DfxError("--resume needs a streamable output: use a .csv or .jsonl file")
    _trim_partial_line(output)
    # Paths that are not valid UTF-8 were written byte for byte (surrogateescape): read them back the same way.
    with open(output, newline="", encoding="utf-8", errors="surrogateescape") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return set()
            if tuple(header) != FIELDS:
                raise DfxError(f"{output}: its header {header} is not dfx's ({','.join(FIELDS)}); resume into a "
                               f"file dfx-infer wrote, or write to a new --output")
            keys = set()
            for row in reader:
                if len(row) != len(FIELDS):
                    raise DfxError(f"{output}, line {reader.line_num}: not a row of {len(FIELDS)} fields; the file "
                                   f"was edited or damaged. Repair or remove that line, or write to a new --output")
                keys.add(path_key(row[0]))
            return keys
        keys = set()
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                keys.add(path_key(json.loads(line)["path"]))
            except (ValueError, KeyError, TypeError) as e:
                raise DfxError(f"{output}, line {n}: not a dfx row ({type(e).__name__}); repair or remove that "
                               f"line, or write to a new --output") from e
        return keys


def appends(output: str | None, resume: bool) -> bool:
    """True when a run writes after rows already in ``output`` (``--resume`` on a non-empty file)."""
    return bool(resume and output and os.path.isfile(output) and os.path.getsize(output) > 0)


def open_writer(output: str | None, fmt: str, append: bool = False, stdout: IO[str] | None = None) -> _Writer:
    """A writer for ``fmt`` on ``output`` (stdout when None); ``append`` continues a file (see :func:`appends`)."""
    if output is None:
        f: IO[str] = stdout or sys.stdout
    else:
        try:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            # surrogateescape: a file name that is not valid UTF-8 is written as its own bytes, not a crash
            f = open(output, "a" if append else "w", encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as e:
            raise DfxError(f"cannot write {output}: {e.strerror or e}") from e
    writer = {"table": lambda: _Table(f), "csv": lambda: _Csv(f, header=not append), "jsonl": lambda: _Jsonl(f),
              "json": lambda: _Json(f)}[fmt]()
    writer.owns_file = output is not None
    return writer
