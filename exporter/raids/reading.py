"""Reading the registry for an export: one consistent snapshot, keyset pages, the watermark.

The watermark is internal: it names a raid's id and change time, and that raid may be
closed, embargoed or deleted. It stays in the job's result (the database), never in a
public manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, literal, tuple_

from ..context import Context
from ..db import UTCDateTime
from .models import Raid


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Watermark:
    """The (updated_at, id) of the newest change an export covered."""

    updated_at: datetime
    id: int

    def to_dict(self) -> dict[str, Any]:
        return {"updated_at": _iso(self.updated_at), "id": self.id}

    @classmethod
    def from_dict(cls, data: dict | None) -> Watermark | None:
        return cls(_parse_iso(data["updated_at"]), int(data["id"])) if data else None

    def after(self):
        """SQL: raids strictly after this watermark."""
        return tuple_(Raid.updated_at, Raid.id) > tuple_(_ts(self.updated_at), _int(self.id))

    def not_after(self):
        return tuple_(Raid.updated_at, Raid.id) <= tuple_(_ts(self.updated_at), _int(self.id))


def _ts(value: datetime):
    return literal(value, UTCDateTime())


def _int(value: int):
    return literal(value, Raid.id.type)


@contextmanager
def snapshot(ctx: Context) -> Iterator[Connection]:
    """A read-only connection seeing one consistent snapshot for the whole export."""
    engine = ctx.db.engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
        else:
            conn.exec_driver_sql("BEGIN")  # pysqlite would not begin for reads; WAL keeps the snapshot
            try:
                yield conn
            finally:
                conn.rollback()


def keyset_pages(conn: Connection, query, order: str, page_size: int) -> Iterator[list]:
    """Pages of `query` by keyset: order "id" (id > last) or "updated" ((updated_at, id) > last)."""
    last = None
    while True:
        q = query
        if last is not None:
            q = q.where(Raid.id > last.id if order == "id" else Watermark(last.updated_at, last.id).after())
        q = q.order_by(Raid.id) if order == "id" else q.order_by(Raid.updated_at, Raid.id)
        rows = conn.execute(q.limit(page_size)).all()
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        last = rows[-1]
