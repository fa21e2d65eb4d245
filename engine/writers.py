"""Streaming result writers: a terminal table, CSV, JSON Lines and JSON.

Schema (stable; every format has these fields in this order):
``path`` (str), ``score`` (P(fake), float in [0, 1], empty/null when not scored), ``label`` (``fake`` |
``real``, empty/null when not scored), ``status`` (``ok`` or an error status), ``error`` (message, empty when ok).

When faces are detected the schema grows by :data:`FACE_FIELDS` (the first five keep their meaning): per scored
face a row with ``face`` (its index, most confident first), ``box`` (x0 y0 x1 y1 in the image's pixels) and
``face_confidence``; after a file's face rows comes the file's own row (``face`` empty) whose score is its most
suspicious face's and whose ``faces`` counts the faces detected. Videos add ``frame`` (on per-frame face rows)
and ``frames`` (frames scored, on the video's own row). One row per file: keep the rows whose ``face`` is empty.
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

__all__ = ["FIELDS", "FACE_FIELDS", "FORMATS", "record", "is_file_row", "printable", "open_writer", "format_for",
           "already_scored", "appends"]

FIELDS = ("path", "score", "label", "status", "error")
FACE_FIELDS = (*FIELDS, "face", "frame", "box", "face_confidence", "faces", "frames")
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


def record(row: Row, fields: tuple[str, ...] = FIELDS) -> dict:
    """A row as the JSON formats write it (score rounded to 6 decimals, None when not scored)."""
    r = {"path": row.path, "score": None if row.score is None else round(row.score, 6), "label": row.label,
         "status": row.status, "error": row.error}
    for k in fields[len(FIELDS):]:
        v = getattr(row, k)
        r[k] = list(v) if k == "box" and v is not None else v
    return r


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    return " ".join(map(str, value)) if key == "box" else str(value)


def is_file_row(r: dict) -> bool:
    """True for a file's (or video's) own row, False for a face row."""
    return r.get("face") in (None, "") and r.get("frame") in (None, "")


class _Writer:
    def __init__(self, f: IO[str], fields: tuple[str, ...] = FIELDS):
        self.f = f
        self.fields = fields
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
    def __init__(self, f: IO[str], fields: tuple[str, ...] = FIELDS):
        super().__init__(f, fields)
        self.faces = fields != FIELDS
        f.write(f"{'score':>8}  {'label':<5}  {'status':<13}  {'face':<14}  path\n" if self.faces else
                f"{'score':>8}  {'label':<5}  {'status':<13}  path\n")

    def write(self, row: Row) -> None:
        score = "-" if row.score is None else f"{row.score:.4f}"
        tail = f"  ({row.error})" if row.error else ""
        face = ""
        if self.faces:
            if row.face is not None:
                face = f"{'' if row.frame is None else f'f{row.frame} '}#{row.face} {row.face_confidence:.2f}"
            elif row.faces is not None:
                face = f"{row.faces} found" + ("" if row.frames is None else f", {row.frames} fr")
            face = f"{face:<14}  "
        self.f.write(f"{score:>8}  {row.label or '-':<5}  {row.status:<13}  {face}{printable(row.path)}{tail}\n")


class _Csv(_Writer):
    def __init__(self, f: IO[str], fields: tuple[str, ...], header: bool):
        super().__init__(f, fields)
        self.w = csv.writer(f, lineterminator="\n")
        if header:
            self.w.writerow(fields)

    def write(self, row: Row) -> None:
        r = record(row, self.fields)
        self.w.writerow([_cell(k, r[k]) for k in self.fields])


class _Jsonl(_Writer):
    def write(self, row: Row) -> None:
        self.f.write(json.dumps(record(row, self.fields)) + "\n")


class _Json(_Writer):
    """A JSON array, written incrementally: rows are not lost on a crash, but the file closes only at the end."""

    def __init__(self, f: IO[str], fields: tuple[str, ...]):
        super().__init__(f, fields)
        self.first = True
        f.write("[")

    def write(self, row: Row) -> None:
        self.f.write(("\n" if self.first else ",\n") + json.dumps(record(row, self.fields)))
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


def _trim_after_last_file_row(path: Path, end: int) -> None:
    """Drops face rows written after the last file row (a crash between a file's face rows and its own row), so
    the resumed run writes that file's rows once, whole."""
    if end < path.stat().st_size:
        with open(path, "rb+") as f:
            f.truncate(end)


def already_scored(output: Path, fmt: str, fields: tuple[str, ...] = FIELDS) -> set[str]:
    """Files with a row in an existing CSV/JSONL output (for ``--resume``), as :func:`path_key` keys.

    A torn last line (a crash mid-write) is dropped, and so are face rows after the last file's own row; any other
    line that is not a row of this schema (a foreign header, garbage, a record torn across lines, an output written
    with faces on resumed with them off or the reverse) stops the resume with its line number instead of guessing.
    """
    if not output.is_file():
        return set()
    if fmt not in ("csv", "jsonl"):
        raise DfxError("--resume needs a streamable output: use a .csv or .jsonl file")
    _trim_partial_line(output)
    # Paths that are not valid UTF-8 were written byte for byte (surrogateescape): read them back the same way.
    keys, end, consumed = set(), 0, 0
    # Byte counts of the lines read so far: where each file row ends is where a resume may cut.
    with open(output, "rb") as f:
        def lines():
            nonlocal consumed
            for raw in iter(f.readline, b""):
                consumed += len(raw)
                yield raw.decode("utf-8", "surrogateescape")

        if fmt == "csv":
            reader = csv.reader(lines())  # reads a quoted, multi-line field (a newline in a file name) as one row
            header = next(reader, None)
            if header is None:
                return set()
            if tuple(header) != fields:
                hint = (" (an output written with faces on is resumed with faces on, and the reverse)"
                        if tuple(header) in (FIELDS, FACE_FIELDS) else "")
                raise DfxError(f"{output}: its header {header} is not this run's ({','.join(fields)}){hint}; resume "
                               f"into a file dfx-infer wrote for this run, or write to a new --output")
            end = consumed
            for cells in reader:
                if len(cells) != len(fields):
                    raise DfxError(f"{output}, line {reader.line_num}: not a row of {len(fields)} fields; the file "
                                   f"was edited or damaged. Repair or remove that line, or write to a new --output")
                if is_file_row(dict(zip(fields, cells))):
                    keys.add(path_key(cells[0]))
                    end = consumed
        else:
            for n, line in enumerate(lines(), 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    path = r["path"]
                except (ValueError, KeyError, TypeError) as e:
                    raise DfxError(f"{output}, line {n}: not a dfx row ({type(e).__name__}); repair or remove that "
                                   f"line, or write to a new --output") from e
                if is_file_row(r):
                    keys.add(path_key(path))
                    end = consumed
    _trim_after_last_file_row(output, end)
    return keys


def appends(output: str | None, resume: bool) -> bool:
    """True when a run writes after rows already in ``output`` (``--resume`` on a non-empty file)."""
    return bool(resume and output and os.path.isfile(output) and os.path.getsize(output) > 0)


def open_writer(output: str | None, fmt: str, append: bool = False, stdout: IO[str] | None = None,
                fields: tuple[str, ...] = FIELDS) -> _Writer:
    """A writer for ``fmt`` on ``output`` (stdout when None); ``append`` continues a file (see :func:`appends`);
    ``fields``: :data:`FIELDS`, or :data:`FACE_FIELDS` when faces are detected."""
    if output is None:
        f: IO[str] = stdout or sys.stdout
    else:
        try:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            # surrogateescape: a file name that is not valid UTF-8 is written as its own bytes, not a crash
            f = open(output, "a" if append else "w", encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as e:
            raise DfxError(f"cannot write {output}: {e.strerror or e}") from e
    writer = {"table": lambda: _Table(f, fields), "csv": lambda: _Csv(f, fields, header=not append),
              "jsonl": lambda: _Jsonl(f, fields), "json": lambda: _Json(f, fields)}[fmt]()
    writer.owns_file = output is not None
    return writer
