"""Publishing an agency's dump: one change set per run, a full snapshot now and then, LATEST.json last.

The database is the source of truth. A run reads the feed (`dump_feeds`), computes in one
consistent read snapshot what changed since its internal watermark up to the settle cutoff
(against `dump_members`, the raids the dump holds, so a raid that was deleted, left the
agency or went from full to redacted gets an explicit tombstone, and an embargo that ended
gets its full record), and streams the operations into gzip JSON Lines parts under keys of
its own run. Then ONE transaction moves the feed's seq from N to N+1 (compare-and-set: of
two publishers one wins, the loser deletes its parts), updates the members and records the
change set with its manifest. Only after that commit are the manifest (create-only) and
LATEST.json (a forward-only compare-and-set) written, so a reader never sees a manifest
whose parts are missing. A run that finds the database ahead of storage (a crash after the
commit) first rewrites the missing objects from the change-set row.

Public documents carry no internal raid id or change time: the watermark published is the
cutoff time.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..context import Context
from ..db import utcnow
from ..errors import TransientError
from ..raids.export import _columns, _record_line
from ..raids.models import Raid
from ..raids.public import published_in_full, published_in_full_sql
from ..raids.reading import Watermark, _iso, keyset_pages, snapshot
from ..raids.registry import get_agency
from ..raids.scope import PUBLIC, Scope
from ..storage import PreconditionFailed, Storage
from . import layout
from .models import DumpChangeset, DumpFeed, DumpMember, DumpObject

log = logging.getLogger(__name__)

GZIP_LEVEL = 6
JSON_TYPE = "application/json"
PART_TYPE = "application/gzip"
Progress = Callable[[int], None]


class PublicationLost(TransientError):
    """Another publisher took this seq first; this run's parts were removed."""


# -- parts -----------------------------------------------------------------------------------


def upsert_line(handle: str, full: bool, record: bytes) -> bytes:
    return b'{"op":"upsert","id":' + json.dumps(handle).encode() + b',"full":' + (b"true" if full else b"false") + b',"record":' + record + b"}"


def delete_line(handle: str, reason: str, deleted_at: datetime | None = None) -> bytes:
    op: dict[str, Any] = {"op": "delete", "id": handle, "reason": reason}
    if deleted_at is not None:
        op["deletedAt"] = _iso(deleted_at)
    return json.dumps(op, separators=(",", ":")).encode()


class PartWriter:
    """gzip JSON Lines parts of at most `limit` lines, each written create-only to storage once full.

    The lines of one raid (a tombstone and its redacted record) always share a part."""

    def __init__(self, storage: Storage, folder: str, seq: int, run_id: str, stem: str, limit: int, written: list[str]):
        self.storage, self.folder, self.seq, self.run_id, self.stem, self.limit = storage, folder, seq, run_id, stem, limit
        self.written = written  # every key this run wrote, to remove if it loses
        self.parts: list[dict[str, Any]] = []
        self._spool = None
        self._gz: gzip.GzipFile | None = None
        self._counts = {"records": 0, "upserts": 0, "deletes": 0}

    def add(self, lines: list[bytes], upserts: int, deletes: int) -> None:
        if self._gz is not None and self._counts["records"] + len(lines) > self.limit:
            self._finish()
        if self._gz is None:
            self._spool = tempfile.TemporaryFile()
            self._gz = gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=self._spool, mtime=0)
        self._gz.write(b"\n".join(lines) + b"\n")
        self._counts["records"] += len(lines)
        self._counts["upserts"] += upserts
        self._counts["deletes"] += deletes

    def _finish(self) -> None:
        self._gz.close()
        self._spool.seek(0)
        rel = layout.part_key(self.seq, self.run_id, self.stem, len(self.parts) + 1)
        try:
            info = self.storage.create(self.folder + rel, self._spool, PART_TYPE)
        finally:
            self._spool.close()
            self._gz = self._spool = None
        self.written.append(self.folder + rel)
        self.parts.append({"key": rel, "size": info.size, "sha256": info.sha256, "md5": info.md5, **self._counts})
        self._counts = {"records": 0, "upserts": 0, "deletes": 0}

    def close(self) -> list[dict[str, Any]]:
        if self._gz is not None:
            self._finish()
        return self.parts

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._gz = self._spool = None


def _totals(parts: list[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(p[k] for p in parts) for k in ("records", "upserts", "deletes")}


# -- the feed --------------------------------------------------------------------------------


@dataclass
class Feed:
    """What a run read of the feed before it started."""

    agency: str
    seq: int = 0
    manifest_sha256: str | None = None
    watermark: Watermark | None = None
    snapshot_seq: int | None = None
    snapshot_at: datetime | None = None

    @classmethod
    def read(cls, session: Session, agency: str) -> Feed:
        row = session.get(DumpFeed, agency)
        if row is None:
            return cls(agency)
        wm = Watermark(row.watermark_updated_at, row.watermark_id) if row.watermark_id is not None else None
        return cls(agency, row.seq, row.manifest_sha256, wm, row.snapshot_seq, row.snapshot_at)


@dataclass
class Changes:
    """What a run found: the parts written and the member rows to change (raid id -> (handle, in_full) or None)."""

    parts: list[dict[str, Any]]
    members: dict[int, tuple[str, bool] | None] = field(default_factory=dict)
    watermark: Watermark | None = None


def _changed_query(scope: Scope, feed: Feed, as_of, cutoff: datetime):
    """Raids changed after the watermark up to the cutoff that the agency has or had, with their membership."""
    member = and_(DumpMember.agency == scope.id, DumpMember.raid_id == Raid.id)
    cols = _columns(scope, as_of, "updated", False) + [
        Raid.deleted_at,
        case((scope.condition(), literal(True)), else_=literal(False)).label("in_scope"),
        DumpMember.raid_id.label("member"),
        DumpMember.in_full.label("member_in_full"),
    ]
    conds = [Raid.updated_at <= cutoff, or_(scope.condition(), DumpMember.raid_id.is_not(None))]
    if feed.watermark:
        conds.append(feed.watermark.after())
    return select(*cols).select_from(Raid).outerjoin(DumpMember, member).where(and_(*conds))


def _expired_query(scope: Scope, feed: Feed, as_of, cutoff: datetime):
    """Raids the dump holds redacted whose embargo has ended, and that the changed pass did not see."""
    member = and_(DumpMember.agency == scope.id, DumpMember.raid_id == Raid.id, DumpMember.in_full.is_(False))
    unchanged = or_(feed.watermark.not_after(), Raid.updated_at > cutoff) if feed.watermark else Raid.updated_at > cutoff
    cond = and_(scope.condition(), Raid.deleted_at.is_(None), published_in_full_sql(as_of), unchanged)
    return select(*_columns(scope, as_of, "id", False)).select_from(Raid).join(DumpMember, member).where(cond)


def compute_changes(conn: Connection, scope: Scope, feed: Feed, as_of, cutoff: datetime, writer: PartWriter, page_size: int, progress: Progress) -> Changes:
    changes = Changes(parts=[], watermark=feed.watermark)
    done = 0
    for rows in keyset_pages(conn, _changed_query(scope, feed, as_of, cutoff), "updated", page_size):
        for row in rows:
            if row.in_scope and row.deleted_at is None:
                full = published_in_full(row.access_type, row.embargo_expiry, as_of)
                lines, deletes = [], 0
                if row.member_in_full and not full:  # went from full to redacted: withdraw the full record explicitly
                    lines.append(delete_line(row.handle, "embargoed"))
                    deletes = 1
                lines.append(upsert_line(row.handle, full, _record_line(row, True, as_of)))
                writer.add(lines, 1, deletes)
                changes.members[row.id] = (row.handle, full)
            elif row.member is not None:
                writer.add([delete_line(row.handle, "deleted" if row.deleted_at else "left_scope", row.deleted_at)], 0, 1)
                changes.members[row.id] = None
        changes.watermark = Watermark(rows[-1].updated_at, rows[-1].id)
        done += len(rows)
        progress(done)
    for rows in keyset_pages(conn, _expired_query(scope, feed, as_of, cutoff), "id", page_size):
        for row in rows:
            writer.add([upsert_line(row.handle, True, _record_line(row, True, as_of))], 1, 0)
            changes.members[row.id] = (row.handle, True)
        done += len(rows)
        progress(done)
    changes.parts = writer.close()
    return changes


def write_snapshot(conn: Connection, scope: Scope, as_of, writer: PartWriter, page_size: int, progress: Progress) -> list[dict[str, Any]]:
    """Every live raid of the agency as the public sees it now (never older than the change set it equals)."""
    cols = _columns(scope, as_of, "id", False)
    done = 0
    for rows in keyset_pages(conn, select(*cols).where(and_(scope.condition(), Raid.deleted_at.is_(None))), "id", page_size):
        for row in rows:
            writer.add([upsert_line(row.handle, published_in_full(row.access_type, row.embargo_expiry, as_of), _record_line(row, True, as_of))], 1, 0)
        done += len(rows)
        progress(done)
    return writer.close()


# -- documents -------------------------------------------------------------------------------


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


def _snapshot_due(feed: Feed, seq: int, now: datetime, every: int, days: float) -> bool:
    if feed.snapshot_seq is None or feed.snapshot_at is None:
        return True
    return seq - feed.snapshot_seq >= every or now - feed.snapshot_at >= timedelta(days=days)


def _retention(session: Session, agency: str, new_snapshot: int | None, keep: int) -> tuple[int, int]:
    """(oldest change seq kept, latest snapshot seq) once this run's snapshot (if any) is in."""
    seqs = list(session.scalars(select(DumpChangeset.seq).where(DumpChangeset.agency == agency, DumpChangeset.snapshot.is_not(None)).order_by(DumpChangeset.seq.desc())))
    if new_snapshot is not None:
        seqs.insert(0, new_snapshot)
    kept = seqs[:keep]
    return min(kept), kept[0]


# -- storage after the commit ------------------------------------------------------------------


def ensure_object(storage: Storage, key: str, body: bytes, content_type: str = JSON_TYPE) -> bool:
    """Write `body` at `key` create-only; True if written, False if it was there already with these bytes."""
    try:
        storage.create(key, body, content_type)
        return True
    except PreconditionFailed:
        existing = storage.read_bytes(key)
        if layout.sha256(existing) != layout.sha256(body):
            raise RuntimeError(f"{key} exists with other content than the database records; refusing to publish over it") from None
        return False


def advance_latest(storage: Storage, folder: str, body: bytes, seq: int, attempts: int = 20) -> bool:
    """Point LATEST.json at `seq` unless it already names seq or a later one (never backwards); True if moved."""
    key = folder + layout.LATEST
    for _ in range(attempts):
        current = storage.read_with_etag(key)
        etag = None
        if current is not None:
            data, etag = current
            if json.loads(data)["seq"] >= seq:
                return False
        try:
            storage.put_if(key, body, etag, JSON_TYPE)
            return True
        except PreconditionFailed:
            continue  # another publisher moved it: read again
    raise TransientError(f"{key}: could not move it forward after {attempts} attempts")


def repair(ctx: Context, agency: str) -> bool:
    """Make storage show what the database published last (a crash after the commit); True if anything was written."""
    with ctx.db.session() as s:
        feed = s.get(DumpFeed, agency)
        row = s.scalars(select(DumpChangeset).where(DumpChangeset.agency == agency, DumpChangeset.seq == feed.seq)).first() if feed and feed.seq else None
    if row is None:
        return False
    folder = layout.folder(agency)
    wrote = ensure_object(ctx.storage, folder + layout.changes_key(row.seq), row.manifest.encode())
    if row.snapshot is not None:
        wrote |= ensure_object(ctx.storage, folder + layout.snapshot_key(row.seq), row.snapshot.encode())
    wrote |= advance_latest(ctx.storage, folder, row.latest.encode(), row.seq)
    if wrote:
        log.warning("dump %s: rewrote the objects of change set %d from the database (a run stopped after its commit)", agency, row.seq)
    return wrote


def _delete_keys(storage: Storage, keys: list[str]) -> None:
    """Manifests before the parts they name, so no reader finds a manifest without its parts."""
    for key in sorted(keys, key=lambda k: (not k.endswith(".json"), k)):
        try:
            storage.delete(key)
        except Exception:
            log.exception("dump: could not delete %s; cleanup will", key)


# -- the run ---------------------------------------------------------------------------------


def publish(ctx: Context, agency: str, run_id: str, job_id: str | None = None, progress: Progress | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Publish the next change set of `agency`'s dump (and a snapshot when due); returns what was done."""
    settings, storage = ctx.settings, ctx.storage
    progress = progress or (lambda _n: None)
    with ctx.db.session() as s:
        scope = Scope(PUBLIC, agency)
        scope.check(s)
        scope = scope.resolve(s)
    repair(ctx, agency)
    with ctx.db.session() as s:
        feed = Feed.read(s, agency)
    now = now or utcnow()
    as_of, cutoff = now.date(), now - timedelta(seconds=settings.export_settle_seconds)
    seq, folder = feed.seq + 1, layout.folder(agency)
    written: list[str] = []
    limit, page = settings.dump_part_records, settings.export_page_size
    try:
        with snapshot(ctx) as conn:
            writer = PartWriter(storage, folder, seq, run_id, "changes", limit, written)
            try:
                changes = compute_changes(conn, scope, feed, as_of, cutoff, writer, page, progress)
            except BaseException:
                writer.abort()
                raise
            if not changes.parts and feed.seq > 0:
                log.info("dump %s: nothing changed since change set %d; nothing published", agency, feed.seq)
                return {"agency": agency, "published": False, "seq": feed.seq}
            snapshot_parts = None
            if feed.seq == 0:
                snapshot_parts = changes.parts  # the first publication is both change set 1 and snapshot 1
            elif _snapshot_due(feed, seq, now, settings.dump_snapshot_every, settings.dump_snapshot_days):
                writer = PartWriter(storage, folder, seq, run_id, "snapshot", limit, written)
                try:
                    snapshot_parts = write_snapshot(conn, scope, as_of, writer, page, progress)
                except BaseException:
                    writer.abort()
                    raise
        try:
            result = _commit(ctx, agency, feed, seq, now, cutoff, changes, snapshot_parts, job_id)
        except IntegrityError:  # a first publication, or this seq's row, written by another publisher meanwhile
            raise PublicationLost(f"dump {agency}: another publisher published change set {seq} first") from None
    except BaseException:
        _delete_keys(storage, written)
        raise
    ensure_object(storage, folder + layout.changes_key(seq), result.pop("manifest_body"))
    snapshot_body = result.pop("snapshot_body")
    if snapshot_body is not None:
        ensure_object(storage, folder + layout.snapshot_key(seq), snapshot_body)
    advance_latest(storage, folder, result.pop("latest_body"), seq)
    _delete_keys(storage, result.pop("pruned_keys"))  # last: a reader of the previous LATEST.json may still need them
    log.info("dump %s: published change set %d (%d records%s)", agency, seq, result["records"], ", with a snapshot" if snapshot_parts is not None else "")
    return result


def _commit(ctx, agency, feed: Feed, seq, now, cutoff, changes: Changes, snapshot_parts, job_id) -> dict[str, Any]:
    """The one transaction that publishes seq: compare-and-set on the feed, members, change-set row, pruning."""
    settings = ctx.settings
    folder = layout.folder(agency)
    totals = _totals(changes.parts)
    with ctx.db.session() as s:
        oldest, latest_snapshot = _retention(s, agency, seq if snapshot_parts is not None else None, settings.dump_keep_snapshots)
        snap_row = None
        if snapshot_parts is None:
            snap_row = s.scalars(select(DumpChangeset).where(DumpChangeset.agency == agency, DumpChangeset.seq == latest_snapshot)).one()
        manifest = {
            "schema": layout.CHANGES_SCHEMA,
            "agency": agency,
            "seq": seq,
            "previous_sha256": feed.manifest_sha256,
            "created_at": _iso(now),
            "watermark": {"changes_up_to": _iso(cutoff)},
            **totals,
            "parts": changes.parts,
            "retention": {"oldest_seq": oldest, "snapshot": {"seq": latest_snapshot, "key": layout.snapshot_key(latest_snapshot)}},
        }
        body = _dumps(manifest)
        sha = layout.sha256(body)
        snap_body = None
        if snapshot_parts is not None:
            snap_body = _dumps({
                "schema": layout.SNAPSHOT_SCHEMA,
                "agency": agency,
                "seq": seq,
                "manifest_sha256": sha,
                "created_at": _iso(now),
                "watermark": {"changes_up_to": _iso(cutoff)},
                **_totals(snapshot_parts),
                "parts": snapshot_parts,
            })
        snap_sha = layout.sha256(snap_body) if snap_body is not None else snap_row.snapshot_sha256
        latest = _dumps({
            "schema": layout.LATEST_SCHEMA,
            "agency": agency,
            "seq": seq,
            "created_at": _iso(now),
            "manifest": {"key": layout.changes_key(seq), "sha256": sha, "size": len(body)},
            "snapshot": {"seq": latest_snapshot, "key": layout.snapshot_key(latest_snapshot), "sha256": snap_sha},
            "oldest_seq": oldest,
        })
        if feed.seq == 0 and s.get(DumpFeed, agency) is None:
            s.add(DumpFeed(agency=agency, seq=0, updated_at=now))
            s.flush()
        values: dict[str, Any] = {"seq": seq, "manifest_sha256": sha, "as_of": now, "cutoff": cutoff, "updated_at": now}
        if changes.watermark:
            values.update(watermark_updated_at=changes.watermark.updated_at, watermark_id=changes.watermark.id)
        if snapshot_parts is not None:
            values.update(snapshot_seq=seq, snapshot_at=now)
        hit = s.execute(update(DumpFeed).where(DumpFeed.agency == agency, DumpFeed.seq == feed.seq).values(**values)).rowcount
        if hit != 1:
            raise PublicationLost(f"dump {agency}: another publisher published change set {seq} first")
        _update_members(s, agency, changes.members)
        s.add(DumpChangeset(agency=agency, seq=seq, manifest=body.decode(), manifest_sha256=sha, snapshot=snap_body.decode() if snap_body else None,
                            snapshot_sha256=layout.sha256(snap_body) if snap_body else None, latest=latest.decode(), job_id=job_id, created_at=now))
        objects = {folder + p["key"]: (p["size"], p["sha256"], PART_TYPE) for p in changes.parts + (snapshot_parts or [])}
        objects[folder + layout.changes_key(seq)] = (len(body), sha, JSON_TYPE)
        if snap_body is not None:
            objects[folder + layout.snapshot_key(seq)] = (len(snap_body), layout.sha256(snap_body), JSON_TYPE)
        s.execute(insert(DumpObject), [{"key": k, "agency": agency, "seq": seq, "size": n, "sha256": h, "content_type": t} for k, (n, h, t) in objects.items()])
        pruned_keys = list(s.scalars(select(DumpObject.key).where(DumpObject.agency == agency, DumpObject.seq < oldest)))
        pruned = list(s.scalars(select(DumpChangeset.seq).where(DumpChangeset.agency == agency, DumpChangeset.seq < oldest)))
        s.execute(delete(DumpObject).where(DumpObject.agency == agency, DumpObject.seq < oldest))
        s.execute(delete(DumpChangeset).where(DumpChangeset.agency == agency, DumpChangeset.seq < oldest))
    return {
        "agency": agency,
        "published": True,
        "seq": seq,
        "snapshot": snapshot_parts is not None,
        **totals,
        "parts": len(changes.parts),
        "manifest_key": folder + layout.changes_key(seq),
        "pruned": pruned,
        "oldest_seq": oldest,
        "pruned_keys": pruned_keys,
        "manifest_body": body,
        "snapshot_body": snap_body,
        "latest_body": latest,
    }


def _update_members(session: Session, agency: str, members: dict[int, tuple[str, bool] | None], batch: int = 1000) -> None:
    ids = list(members)
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        session.execute(delete(DumpMember).where(DumpMember.agency == agency, DumpMember.raid_id.in_(chunk)))
        rows = [{"agency": agency, "raid_id": rid, "handle": members[rid][0], "in_full": members[rid][1]} for rid in chunk if members[rid] is not None]
        if rows:
            session.execute(insert(DumpMember), rows)


# -- readers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicObject:
    key: str
    size: int
    sha256: str
    content_type: str
    immutable: bool
    body: bytes | None = None  # LATEST.json, read whole (it is small and changes)


def public_object(ctx: Context, key: str) -> PublicObject | None:
    """The dump object at `key` if a kept change set names it (or the agency's LATEST.json), else None."""
    if not key.startswith(layout.ROOT):
        return None
    rest = key[len(layout.ROOT) :]
    agency, _, name = rest.partition("/")
    if name == layout.LATEST:
        try:
            found = ctx.storage.read_with_etag(key)
        except Exception:
            return None
        if found is None:
            return None
        data = found[0]
        return PublicObject(key, len(data), layout.sha256(data), JSON_TYPE, immutable=False, body=data)
    with ctx.db.session() as s:
        row = s.get(DumpObject, key)
    if row is None:
        return None
    return PublicObject(key, row.size, row.sha256, row.content_type, immutable=True)


def named_keys(session: Session, keys: list[str]) -> set[str]:
    """For exporter.orphans: the keys of the batch a kept change set names, and every LATEST.json."""
    named = {k for k in keys if k.endswith("/" + layout.LATEST) and k.count("/") == 2}
    return named | set(session.scalars(select(DumpObject.key).where(DumpObject.key.in_(keys))))



def status(ctx: Context, agency: str) -> dict[str, Any]:
    """The agency's dump as the database has it: seq, latest snapshot, kept change sets, objects."""
    with ctx.db.session() as s:
        agency = get_agency(s, agency).id  # NotFound for an agency that is not registered
        feed = s.get(DumpFeed, agency)
        kept = list(s.execute(select(DumpChangeset.seq, DumpChangeset.snapshot.is_not(None), DumpChangeset.created_at).where(DumpChangeset.agency == agency).order_by(DumpChangeset.seq)))
        objects = s.scalar(select(func.count()).select_from(DumpObject).where(DumpObject.agency == agency)) or 0
    return {
        "agency": agency,
        "seq": feed.seq if feed else 0,
        "snapshot_seq": feed.snapshot_seq if feed else None,
        "snapshot_at": _iso(feed.snapshot_at) if feed else None,
        "change_sets": [{"seq": seq, "snapshot": bool(snap), "created_at": _iso(at)} for seq, snap, at in kept],
        "objects": objects,
        "latest": layout.folder(agency) + layout.LATEST,
    }
