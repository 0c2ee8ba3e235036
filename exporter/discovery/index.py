"""Keeping the search index current: incremental refresh, reconcile and rebuild.

Raids change through the ORM, through bulk inserts and through raw SQL; all of them move
`raids.updated_at` (a trigger does it for SQL that forgets), so the refresh reads the raids
changed since its last scan began, less EXPORT-style settle seconds (SEARCH_SETTLE_SECONDS)
for transactions still committing then, and upserts their public view. Upserts are
idempotent: a view whose digest did not change keeps its datestamp. Each refresh also
re-indexes what the index itself says needs it: rows a write withdrew (the raids trigger in
the migration) and embargoed raids whose embargo has passed since (they become public in
full without any write). `reconcile` compares every raid's updated_at with the index and
fixes what differs (a transaction that committed later than the settle window, a raid
deleted by SQL); `rebuild` re-indexes everything.

Only the public view reaches the index: the database hands over a raid's JSON only when it
is published in full (exporter.raids.public.public_json); any other raid is indexed from
its handle, dates and access block (exporter.raids.public.redacted).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Column, MetaData, and_, case, func, or_, select, true, update
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..context import Context
from ..db import utcnow
from ..raids.models import Raid, ServicePoint
from ..raids.public import public_json, redacted
from ..raids.reading import keyset_pages
from .models import RaidSearch, SearchState
from .text import Document

log = logging.getLogger(__name__)

STATE = "raids"
LEASE_SECONDS = 600
SUMMARY_CHARS = 300
NAME_KEYS = ("name", "fullName", "givenName", "familyName")

# raid_search with PostgreSQL's tsvector column, which only the migration creates.
_PG_TABLE = RaidSearch.__table__.to_metadata(MetaData())
_PG_TABLE.append_column(Column("tsv", TSVECTOR))


def _source(as_of: date):
    """The columns the index is built from: the JSON only when the raid is public in full."""
    return select(
        Raid.id,
        Raid.handle,
        Raid.updated_at,
        Raid.deleted_at,
        Raid.service_point_id,
        ServicePoint.agency_id,
        Raid.access_type,
        Raid.access_statement,
        Raid.access_statement_language,
        Raid.embargo_expiry,
        Raid.created_at,
        public_json(as_of).label("text"),
    ).join(ServicePoint, ServicePoint.id == Raid.service_point_id)


def _items(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _texts(items: Iterable[dict], key: str = "text") -> list[str]:
    return [i[key].strip() for i in items if isinstance(i.get(key), str) and i[key].strip()]


def document(record: dict, handle: str, in_full: bool) -> Document:
    """What is searchable of a public record: everything listed below when in full, else the handle."""
    doc = Document()
    doc.add_identifier(handle)
    if not in_full:
        return doc
    for text in _texts(_items(record.get("title"))):
        doc.add_title(text)
    for text in _texts(_items(record.get("description"))):
        doc.add_text(text)
    for person in _items(record.get("contributor")):
        doc.add_identifier(person.get("id"))
        for key in NAME_KEYS:
            doc.add_text(person.get(key))
    for org in _items(record.get("organisation")):
        doc.add_identifier(org.get("id"))
        doc.add_text(org.get("name"))
    for subject in _items(record.get("subject")):
        doc.add_identifier(subject.get("id"))
        for text in _texts(_items(subject.get("keyword"))):
            doc.add_text(text)
    return doc


def _start_date(record: dict) -> date | None:
    value = record.get("date", {}).get("startDate") if isinstance(record.get("date"), dict) else None
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _digest(view: dict) -> str:
    return hashlib.sha256(json.dumps(view, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def public_record(row) -> tuple[dict, bool]:
    """(the public record, published in full) of a source row."""
    if row.text is not None:
        return json.loads(row.text), True
    return redacted(row.handle, row.created_at, row.access_type, row.access_statement, row.access_statement_language, row.embargo_expiry), False


def index_row(row, now: datetime | None, postgres: bool) -> dict[str, Any]:
    """The raid_search values of one source row (a tombstone when the raid is deleted)."""
    base = {
        "raid_id": row.id,
        "handle": row.handle,
        "agency_id": row.agency_id,
        "service_point_id": row.service_point_id,
        "source_updated_at": row.updated_at,
        "datestamp": now,
        "withdrawn": False,
    }
    empty = {"access_type": None, "in_full": False, "embargo_expiry": None, "created": None, "start_date": None, "title": None, "summary": None, "title_terms": None, "body_terms": None}
    if row.deleted_at is not None:
        out = base | empty | {"deleted": True, "digest": _digest({"deleted": row.handle, "agency": row.agency_id})}
        return out | ({"tsv": None} if postgres else {})
    record, in_full = public_record(row)
    doc = document(record, row.handle, in_full)
    titles = _texts(_items(record.get("title"))) if in_full else []
    summaries = _texts(_items(record.get("description"))) if in_full else []
    out = base | empty | {
        "access_type": row.access_type,
        "in_full": in_full,
        "embargo_expiry": row.embargo_expiry,
        "created": row.created_at,
        "start_date": _start_date(record) if in_full else None,
        "title": titles[0][:500] if titles else None,
        "summary": summaries[0][:SUMMARY_CHARS] if summaries else None,
        "deleted": False,
        "digest": _digest({"record": record, "agency": row.agency_id, "service_point": row.service_point_id}),
    }
    if postgres:
        out["tsv"] = doc.tsvector()
    else:
        out["title_terms"], out["body_terms"] = doc.fts_columns()
    return out


def _upsert(session: Session, rows: list[dict]) -> None:
    """Insert or update index rows; never over a row written from a newer version of the raid."""
    if not rows:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    table = _PG_TABLE if postgres else RaidSearch.__table__
    stmt = (pg_insert if postgres else sqlite_insert)(table)
    new = stmt.excluded
    changes = {c.name: new[c.name] for c in table.c if c.name not in ("raid_id", "datestamp")}
    changes["datestamp"] = case((table.c.digest == new.digest, table.c.datestamp), else_=new.datestamp)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.raid_id],
        set_=changes,
        where=or_(table.c.source_updated_at.is_(None), table.c.source_updated_at <= new.source_updated_at),
    )
    session.execute(stmt, rows)


# -- datestamps a harvester can trust ------------------------------------------------------------
# An OAI-PMH harvester asks next time for what changed from this response's responseDate. A
# batch stamped before it commits would be missed by a harvest answered in between (its rows
# invisible then, older than the responseDate after). On PostgreSQL, a transaction that stamps
# datestamps holds an advisory lock until it commits, and takes the stamp (the database's
# clock, so hosts' clocks do not matter) once it holds it; a harvest takes its responseDate
# under the same lock, shared: so every datestamp committed later is at least that date.
# SQLite has one writer at a time: both sides take the write lock first (a write that changes
# nothing), so a harvest's responseDate waits for a stamped batch to commit there too.
HARVEST_LOCK = 0x0A15EA7C
_TAKE_SQLITE_WRITE_LOCK = sql("UPDATE search_state SET name = name WHERE 0")


def stamp_for_write(session: Session) -> datetime:
    """The datestamp of what this transaction writes, taken once it holds the harvest lock (to commit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(HARVEST_LOCK)))
        return session.scalar(select(func.clock_timestamp())).astimezone(UTC)
    session.execute(_TAKE_SQLITE_WRITE_LOCK)
    return utcnow()


def harvest_time(ctx: Context) -> datetime:
    """A harvest's responseDate: once no transaction that stamped an earlier datestamp is uncommitted."""
    with ctx.db.session() as s:
        if ctx.db.backend == "postgresql":
            s.execute(select(func.pg_advisory_xact_lock_shared(HARVEST_LOCK)))
            return s.scalar(select(func.clock_timestamp())).astimezone(UTC)
        s.execute(_TAKE_SQLITE_WRITE_LOCK)
        return utcnow()


def _write(ctx: Context, rows: list) -> int:
    postgres = ctx.db.backend == "postgresql"
    values = [index_row(r, None, postgres) for r in rows]  # stamped below, once the lock is held
    with ctx.db.session() as s:
        now = stamp_for_write(s)
        for v in values:
            v["datestamp"] = now
        _upsert(s, values)
    return len(rows)


def _reindex(ctx: Context, ids: list[int], as_of: date, batch: int) -> Counter:
    """Re-index these raids by id; index rows whose raid no longer exists become tombstones."""
    counts: Counter = Counter()
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        with ctx.db.engine.connect() as conn:
            rows = conn.execute(_source(as_of).where(Raid.id.in_(chunk))).all()
        counts["reindexed"] += _write(ctx, rows)
        gone = set(chunk) - {r.id for r in rows}
        if gone:
            counts["removed"] += _bury(ctx, gone)
    return counts


def _bury(ctx: Context, ids: set[int]) -> int:
    """Index rows of raids deleted by SQL: a tombstone if they were ever public, else nothing."""
    with ctx.db.session() as s:
        now = stamp_for_write(s)
        rows = s.scalars(select(RaidSearch).where(RaidSearch.raid_id.in_(ids))).all()
        for row in rows:
            if row.handle is None or row.datestamp is None:
                s.delete(row)
                continue
            if not row.deleted:
                view = {"deleted": row.handle, "agency": row.agency_id}
                row.deleted, row.withdrawn, row.in_full, row.digest, row.datestamp = True, False, False, _digest(view), now
                row.title = row.summary = row.title_terms = row.body_terms = row.start_date = row.access_type = None
            else:
                row.withdrawn = False
        if ctx.db.backend == "postgresql" and rows:
            s.execute(update(_PG_TABLE).where(_PG_TABLE.c.raid_id.in_(ids), _PG_TABLE.c.deleted.is_(True)).values(tsv=None))
    return len(ids)


def _needing_reindex(ctx: Context, as_of: date) -> list[int]:
    """What the index says must be looked at again: withdrawn rows, and embargoes that have passed."""
    expired = and_(~RaidSearch.in_full, ~RaidSearch.deleted, RaidSearch.access_type == "embargoed", RaidSearch.embargo_expiry < as_of)
    with ctx.db.session() as s:  # both halves are partial indexes (see RaidSearch), so this stays cheap
        withdrawn = set(s.scalars(select(RaidSearch.raid_id).where(RaidSearch.withdrawn)))
        return sorted(withdrawn | set(s.scalars(select(RaidSearch.raid_id).where(expired))))


def _mismatched(ctx: Context) -> list[int]:
    """Raids whose index row is missing or was built from another version, and rows whose raid is gone."""
    with ctx.db.session() as s:
        stale = s.scalars(
            select(Raid.id).outerjoin(RaidSearch, RaidSearch.raid_id == Raid.id).where(
                or_(RaidSearch.raid_id.is_(None), RaidSearch.source_updated_at.is_(None), RaidSearch.source_updated_at != Raid.updated_at)
            )
        ).all()
        orphans = s.scalars(select(RaidSearch.raid_id).outerjoin(Raid, Raid.id == RaidSearch.raid_id).where(Raid.id.is_(None), RaidSearch.deleted.is_(False))).all()
    return sorted(set(stale) | set(orphans))


# -- the lease: one refresh at a time ---------------------------------------------------------


def _state_row(session: Session) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(SearchState).values(name=STATE).on_conflict_do_nothing(index_elements=["name"]))


@contextmanager
def _lease(ctx: Context) -> Iterator[tuple[str, SearchState] | None]:
    token, now = str(uuid.uuid4()), utcnow()
    with ctx.db.session() as s:
        _state_row(s)
        taken = s.execute(
            update(SearchState)
            .where(SearchState.name == STATE, or_(SearchState.lease_until.is_(None), SearchState.lease_until < now))
            .values(lease_token=token, lease_until=now + timedelta(seconds=LEASE_SECONDS))
        ).rowcount
    if not taken:
        yield None
        return
    with ctx.db.session() as s:
        state = s.get(SearchState, STATE)
    try:
        yield token, state
    finally:
        with ctx.db.session() as s:
            s.execute(update(SearchState).where(SearchState.name == STATE, SearchState.lease_token == token).values(lease_token=None, lease_until=None))


def _renew(ctx: Context, token: str) -> None:
    with ctx.db.session() as s:
        s.execute(update(SearchState).where(SearchState.name == STATE, SearchState.lease_token == token).values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS)))


# -- the entry points ---------------------------------------------------------------------


def refresh(ctx: Context, full: bool = False, reconcile: bool = False) -> dict[str, Any]:
    """Bring the index up to date (see the module docstring); returns counts, or {"skipped": ...}."""
    started = utcnow()
    clock = time.monotonic()
    as_of = started.date()
    batch = ctx.settings.search_batch_size
    with _lease(ctx) as lease:
        if lease is None:
            return {"skipped": "another refresh holds the lease"}
        token, state = lease
        counts: Counter = Counter()
        since = None if full or state.scanned_up_to is None else state.scanned_up_to - timedelta(seconds=ctx.settings.search_settle_seconds)
        order = "id" if since is None else "updated"
        query = _source(as_of).where(Raid.updated_at >= since if since is not None else true())
        with ctx.db.engine.connect() as conn:
            for rows in keyset_pages(conn, query, order, batch):
                counts["scanned"] += _write(ctx, rows)
                _renew(ctx, token)
        counts.update(_reindex(ctx, _needing_reindex(ctx, as_of), as_of, batch))
        if full or reconcile:
            counts.update(_reindex(ctx, _mismatched(ctx), as_of, batch))
        with ctx.db.session() as s:
            if ctx.db.backend == "postgresql" and any(counts.values()):
                # GIN's pending list (fastupdate) holds what this refresh wrote until a vacuum
                # merges it; every search through the index reads it all until then
                s.execute(select(func.gin_clean_pending_list(sql("'ix_raid_search_tsv'::regclass"))))
            values: dict[str, Any] = {"scanned_up_to": started}
            if full or reconcile:
                values["reconciled_at"] = started
            s.execute(update(SearchState).where(SearchState.name == STATE, SearchState.lease_token == token).values(**values))
    result = dict(counts) | {"mode": "rebuild" if full else "reconcile" if reconcile else "incremental", "seconds": round(time.monotonic() - clock, 3)}
    log.info("search index refresh: %s", result)
    return result


def rebuild(ctx: Context) -> dict[str, Any]:
    """Re-index every raid (idempotent: unchanged public views keep their datestamps)."""
    return refresh(ctx, full=True)


def reconcile_due(ctx: Context) -> bool:
    """True when the last reconcile is older than SEARCH_RECONCILE_INTERVAL."""
    with ctx.db.session() as s:
        state = s.get(SearchState, STATE)
    last = state.reconciled_at if state else None
    return last is None or utcnow() - last >= timedelta(seconds=ctx.settings.search_reconcile_interval)


def scheduled_refresh(ctx: Context) -> dict[str, Any]:
    """What celery beat runs: an incremental refresh, reconciling too when one is due."""
    return refresh(ctx, reconcile=reconcile_due(ctx))


__all__ = ["document", "index_row", "public_record", "rebuild", "refresh", "scheduled_refresh"]
