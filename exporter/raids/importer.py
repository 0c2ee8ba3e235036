"""`exporter raids import`: JSON Lines or a JSON array of RAiD API records, upserted by handle.

Each record is checked and saved on its own: a bad one is reported with its line number
and the rest go on. In strict mode the first error aborts the import and nothing is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..context import Context
from ..errors import ExporterError, InvalidRequest
from .registry import save_raid

log = logging.getLogger(__name__)

CHUNK = 1 << 20
BATCH = 500
KEEP_ERRORS = 1000


class ImportFailed(ExporterError):
    """A strict import stopped at an error; nothing was written."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message), the first KEEP_ERRORS

    @property
    def records(self) -> int:
        return self.created + self.updated + self.unchanged

    def error(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append((line, message))

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "failed": self.failed, "errors": [{"line": n, "error": m} for n, m in self.errors]}


Item = tuple[int, Any, str | None]  # (line, record, error)


def _json_lines(path: Path) -> Iterator[Item]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8")), None
            except UnicodeDecodeError as exc:
                yield number, None, f"not UTF-8 text: {exc.reason} at byte {exc.start}"
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON: {exc.msg} (column {exc.colno})"


def _json_array(path: Path) -> Iterator[Item]:
    """The elements of a top-level JSON array, read a chunk at a time."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as fh:
        buf, pos, line, eof = "", 0, 1, False

        def more() -> bool:
            nonlocal buf, eof
            chunk = fh.read(CHUNK)
            if not chunk:
                eof = True
                return False
            buf += chunk
            return True

        def skip_ws() -> bool:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return pos < len(buf)

        def consume() -> None:
            nonlocal buf, pos, line
            line += buf.count("\n", 0, pos)
            buf, pos = buf[pos:], 0

        try:
            skip_ws()
            pos += 1  # the "[" the caller saw
            first = True
            while True:
                if not skip_ws():
                    yield line + buf.count("\n", 0, pos), None, "the JSON array is not closed (missing ']')"
                    return
                if buf[pos] == "]":
                    return
                if not first:
                    if buf[pos] != ",":
                        consume()
                        yield line, None, f"expected ',' or ']' between array elements, found {buf[pos]!r}"
                        return
                    pos += 1
                    if not skip_ws():
                        continue
                consume()
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        if eof or not more():
                            yield line + buf.count("\n", 0, exc.pos), None, f"not valid JSON: {exc.msg}; the rest of the array cannot be read"
                            return
                yield line, value, None
                pos = end
                first = False
        except UnicodeDecodeError as exc:
            yield line, None, f"not UTF-8 text: {exc.reason}; the rest of the file cannot be read"


def read_records(path: Path) -> Iterator[Item]:
    """(line, record, error) for every record of a JSON Lines file or a JSON array."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}", field="file") from None
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return _json_array(path) if head.startswith(b"[") else _json_lines(path)


def import_file(ctx: Context, path: str | Path, strict: bool = False, on_progress: Callable[[ImportReport], None] | None = None) -> ImportReport:
    """Upsert every record of the file by handle; see the module docstring for errors."""
    path = Path(path)
    report = ImportReport()
    items = read_records(path)
    if strict:
        with ctx.db.session() as s:
            for line, record, error in items:
                if error is None:
                    try:
                        _, outcome = save_raid(s, record)
                    except InvalidRequest as exc:
                        error = str(exc)
                if error is not None:
                    raise ImportFailed(f"{path}:{line}: {error} (strict: nothing was imported)")
                setattr(report, outcome, getattr(report, outcome) + 1)
        return report
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= BATCH:
            _save_batch(ctx, batch, report)
            batch = []
            if on_progress:
                on_progress(report)
    _save_batch(ctx, batch, report)
    log.info("import %s: %d created, %d updated, %d unchanged, %d failed", path, report.created, report.updated, report.unchanged, report.failed)
    return report


def _save_batch(ctx: Context, batch: list[Item], report: ImportReport) -> None:
    if not batch:
        return
    with ctx.db.session() as s:
        for line, record, error in batch:
            if error is not None:
                report.error(line, error)
                continue
            try:
                with s.begin_nested():
                    _, outcome = save_raid(s, record)
            except InvalidRequest as exc:
                report.error(line, str(exc))
                continue
            except SQLAlchemyError as exc:
                report.error(line, f"could not be saved: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
