"""Archiving one resource: decide whether to ask, fetch, store, and record the outcome.

`archive_resource(ctx, resource_id)` is what the `exporter.archive_resource` task calls.
Every attempt updates the resource's archival record and writes a `task_status` row.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from queue import SimpleQueue
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import bindparam, insert, select, update

from ..context import Context
from ..db import utcnow
from ..errors import NotFound
from ..models import TaskStatus
from ..storage import Storage
from ..storage.base import ObjectInfo
from .ckan import write_back_archival
from .fetch import FetchOptions, FetchResult, fetch
from .models import OK_STATUSES, STATUSES, Archival, ArchiveVersion, Portal, Resource, is_status_broken
from .policy import HostSlots, fresh_until
from .sessions import session_for

log = logging.getLogger(__name__)

TASK_TYPE = "archiver"
ENTITY = "resource"
IN_BATCH = 500  # ids per IN (...) list

def host_slots(ctx: Context) -> HostSlots:
    slots = ctx.__dict__.get("_archiver_slots")
    if slots is None:
        slots = ctx.__dict__["_archiver_slots"] = HostSlots.from_settings(ctx)
    return slots


def cache_url_for(ctx: Context, resource_id: str) -> str:
    """The stable public URL of a resource's latest stored copy (served by the web API)."""
    return f"{ctx.settings.public_url}/api/v1/resources/{resource_id}/download"


KEY_TOKEN_BYTES = 6


def key_timestamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


class StorageSink:
    """Streams a body to `archive/<UTC timestamp>/<resource id>/<random token>/<filename>`.

    The token makes every archive's key its own, so two archives of one resource within the
    same second (two workers, or a forced re-archive) never write to, or overwrite, one object.
    """

    def __init__(self, storage: Storage, resource_id: str, now: datetime):
        self.storage = storage
        self.base = f"archive/{key_timestamp(now)}/{resource_id}"
        self.key: str | None = None
        self.info: ObjectInfo | None = None

    @contextmanager
    def open(self, filename: str, mimetype: str | None):
        self.key = f"{self.base}/{secrets.token_hex(KEY_TOKEN_BYTES)}/{filename}"
        while self.storage.stat(self.key) is not None:
            self.key = f"{self.base}/{secrets.token_hex(KEY_TOKEN_BYTES)}/{filename}"
        with self.storage.open_write(self.key, mimetype, sync=False) as handle:  # archive_batch syncs the batch once
            yield handle
        self.info = handle.info
        self.info.key = self.key


@dataclass
class Attempt:
    """One resource's archiving in a batch: what the database said, then what the fetch found."""

    resource_id: str
    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    previous_sha: str | None = None
    check_only: bool = False
    write_back: bool = False
    skipped: str | None = None  # missing, gone or fresh: no request made
    result: FetchResult | None = None
    duplicate: bool = False
    written_back: dict[str, Any] | None = None  # what the portal answered to the write-back
    prior_failures: int = 0  # the archival record's failure count and first failure before this check
    first_failure: datetime | None = None

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def outcome(self) -> str:
        if self.skipped:
            return self.skipped
        if self.result.stored is not None and not self.duplicate:
            return "stored"
        return STATUSES[self.result.status_id]


def _new_archival(resource_id: str) -> Archival:
    return Archival(resource_id=resource_id, failure_count=0, attempts=0, created_at=utcnow())


PLAN_COLUMNS = (
    Resource.id, Resource.url, Resource.gone_at, Resource.link_check_only,
    Archival.resource_id.label("archival"), Archival.checked_url, Archival.fresh_until, Archival.status_id, Archival.cache_key,
    Archival.etag, Archival.last_modified, Archival.sha256, Archival.failure_count, Archival.first_failure,
    Portal.link_check_only.label("portal_check_only"), Portal.write_back, Portal.api_token,
)


def _plan(ctx: Context, ids: Sequence[str], now: datetime, force: bool, link_check_only: bool | None) -> list[Attempt]:
    """Read what every resource of the batch needs (one transaction, plain rows); missing archival
    records are created and fresh copies marked checked, in bulk."""
    planned: dict[str, Attempt] = {}
    with ctx.db.session() as s:
        for i in range(0, len(ids), IN_BATCH):
            chunk = list(ids[i : i + IN_BATCH])
            rows = s.execute(
                select(*PLAN_COLUMNS)
                .outerjoin(Archival, Archival.resource_id == Resource.id)
                .outerjoin(Portal, Portal.id == Resource.portal_id)
                .where(Resource.id.in_(chunk))
            ).all()
            new = [{"resource_id": r.id, "failure_count": 0, "attempts": 0, "created_at": now, "updated_at": now} for r in rows if r.archival is None]
            if new:
                s.execute(insert(Archival), new)
            for r in rows:
                planned[r.id] = _attempt_for(r, now, force, link_check_only)
            fresh = [{"resource_id": rid, "checked_at": now} for rid in chunk if rid in planned and planned[rid].skipped == "fresh"]
            if fresh:
                _update_by_key(s, Archival, "resource_id", fresh)
    return [planned.get(rid) or Attempt(rid, skipped="missing") for rid in ids]


def _attempt_for(r, now: datetime, force: bool, link_check_only: bool | None) -> Attempt:
    if r.gone_at is not None:
        log.info("archiver: resource %s left its portal; not fetched", r.id)
        return Attempt(r.id, r.url, skipped="gone")
    same_url = r.checked_url == r.url
    if not force and same_url and r.fresh_until and r.fresh_until > now and r.status_id in OK_STATUSES:
        log.debug("archiver: %s still fresh until %s; no request", r.url, r.fresh_until)
        return Attempt(r.id, r.url, skipped="fresh")
    check_only = link_check_only if link_check_only is not None else (bool(r.link_check_only) or bool(r.portal_check_only))
    have_copy = bool(r.cache_key) or check_only
    return Attempt(
        r.id, r.url,
        etag=r.etag if same_url and have_copy else None,
        last_modified=r.last_modified if same_url and have_copy else None,
        previous_sha=r.sha256 if same_url else None,
        check_only=check_only,
        write_back=bool(r.write_back and r.api_token),
        prior_failures=r.failure_count or 0,
        first_failure=r.first_failure,
    )


def _fetch(ctx: Context, attempt: Attempt, now: datetime, http: requests.Session, gate: Callable[[], None] | None, options: dict[bool, FetchOptions]) -> None:
    """Fetch one resource into storage; an identical body (same sha256) is not kept twice."""
    sink = StorageSink(ctx.storage, attempt.resource_id, now)
    try:
        result = fetch(http, attempt.url, options[attempt.check_only], sink, etag=attempt.etag, last_modified=attempt.last_modified, before_attempt=gate)
    except Exception as exc:  # a bug or the database: recorded, never silent
        log.exception("archiver: %s: unexpected error", attempt.url)
        result = FetchResult(status_id=22, url=attempt.url, reason=f"{type(exc).__name__}: {exc}")
    if result.stored is not None and attempt.previous_sha and result.stored.sha256 == attempt.previous_sha:
        attempt.duplicate = True
        try:
            ctx.storage.delete(result.stored.key)
        except Exception:
            log.exception("archiver: could not delete duplicate %s", result.stored.key)
        result.status_id = 1
        result.reason = "Downloaded again: identical to the stored copy (same sha256), not stored twice"
    attempt.result = result


def _fetched(ctx: Context, attempts: list[Attempt], now: datetime, threads: int, session: requests.Session | None, chunk: int) -> Iterator[list[Attempt]]:
    """Fetch on up to `threads` threads and yield the fetched attempts in chunks of about
    `chunk` as they finish, so the caller records one chunk while the next is fetched.

    Each host gets at most its concurrency of lanes; a lane holds one of the host's slots
    (across processes) while it takes the host's resources one by one from a queue the host's
    lanes share (none idles while another has work). A lane's error is raised once every
    lane has stopped (the chunks yielded before stand: they are recorded, and a batch can be
    repeated).
    """
    by_host: dict[str, deque[Attempt]] = defaultdict(deque)
    for a in attempts:
        by_host[a.host].append(a)
    slots = host_slots(ctx)
    options = {flag: FetchOptions.from_settings(ctx.settings, link_check_only=flag) for flag in (False, True)}
    lanes: list[str] = []
    for host, items in by_host.items():
        lanes += [host] * max(1, min(threads, slots.concurrency, len(items)))
    finished: SimpleQueue[Attempt | None] = SimpleQueue()

    def drain(host: str, http: requests.Session, gate: Callable[[], None] | None) -> None:
        queue = by_host[host]
        while True:
            try:
                a = queue.popleft()  # atomic: each attempt is taken by one lane
            except IndexError:
                return
            _fetch(ctx, a, now, http, gate, options)
            finished.put(a)

    def run(host: str) -> None:
        http = session or session_for(ctx)
        if not host:  # no host to be polite to: the fetch refuses the URL itself
            drain(host, http, None)
            return
        if not by_host[host]:  # the host's other lanes took everything
            return
        with slots.hold(host) as gate:
            drain(host, http, gate)

    if threads <= 1 or len(lanes) == 1:
        for host in lanes:
            run(host)
        done = [finished.get() for _ in range(finished.qsize())]
        for i in range(0, len(done), chunk):
            yield done[i : i + chunk]
        return

    def lane(host: str) -> None:
        try:
            run(host)
        finally:
            finished.put(None)  # this lane has stopped

    pool = _pool(threads)
    futures = [pool.submit(lane, host) for host in lanes]
    running, ready = len(lanes), []
    try:
        while running:
            a = finished.get()
            if a is None:
                running -= 1
            else:
                ready.append(a)
            if len(ready) >= chunk or (ready and not running):
                yield ready
                ready = []
    finally:  # the caller stopped early (recording failed): no lane takes more, and none outlives the batch
        for queue in by_host.values():
            queue.clear()
        wait(futures)
    for future in futures:
        future.result()


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's archive threads, kept between batches so their HTTP connections stay open
    (a forked worker process makes its own: the key holds the pid)."""
    key = (os.getpid(), threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="archive")
        return pool


def _record(ctx: Context, attempts: list[Attempt], now: datetime, job_id: str | None) -> None:
    """Every outcome of the batch in one transaction of bulk statements: archival records,
    stored versions, task_status rows."""
    with ctx.db.session() as s:
        for i in range(0, len(attempts), IN_BATCH):
            chunk = attempts[i : i + IN_BATCH]
            ids = [a.resource_id for a in chunk]
            alive = set(s.scalars(select(Resource.id).where(Resource.id.in_(ids))))
            chunk = [a for a in chunk if a.resource_id in alive]  # one deleted meanwhile has nothing to record it on
            statuses = dict(s.execute(
                select(TaskStatus.entity_id, TaskStatus.id).where(TaskStatus.entity_type == ENTITY, TaskStatus.task_type == TASK_TYPE, TaskStatus.key == "status", TaskStatus.entity_id.in_(ids))
            ).all())
            archivals, versions, ts_updates, ts_new = [], [], [], []
            for a in chunk:
                result = a.result
                values, version = _apply(ctx, a, result, now)
                archivals.append(values)
                if version:
                    versions.append(version)
                broken = values["is_broken"] is not False
                error = (result.reason or STATUSES[result.status_id]) if broken else None
                ts = {
                    "state": "success" if result.status_id in OK_STATUSES else ("skipped" if result.status_id == 21 else "failure"),
                    "error": error,
                    "value": {"status_id": result.status_id, "status": STATUSES[result.status_id], "url": a.url, "http_status": result.http_status, "attempts": result.attempts},
                    "job_id": job_id,
                    "failure_count": values["failure_count"] if error else 0,
                    "last_updated": now,
                }
                if a.resource_id in statuses:
                    ts_updates.append({"id": statuses[a.resource_id], **ts})
                else:
                    ts_new.append({"entity_type": ENTITY, "entity_id": a.resource_id, "task_type": TASK_TYPE, "key": "status", **ts})
                log.log(logging.INFO if broken else logging.DEBUG, "archiver: %s -> %s %s%s", a.url, result.status_id, STATUSES[result.status_id], f" ({result.reason})" if result.reason else "")
            _update_by_key(s, Archival, "resource_id", archivals)
            if versions:
                s.execute(insert(ArchiveVersion), versions)
            if ts_updates:
                _update_by_key(s, TaskStatus, "id", ts_updates)
            if ts_new:
                s.execute(insert(TaskStatus), ts_new)


def _update_by_key(s, model, key: str, rows: list[dict[str, Any]]) -> None:
    """UPDATE model's table SET ... WHERE key = the row's, one executemany per set of columns:
    plain statements, without the ORM bulk update's per-row bookkeeping (a third of a
    304's cost in a sweep)."""
    table = model.__table__
    for group in _by_keys(rows):
        columns = [c for c in group[0] if c != key]
        stmt = update(table).where(table.c[key] == bindparam("k_key")).values({c: bindparam(f"v_{c}") for c in columns})
        s.execute(stmt, [{"k_key": row[key], **{f"v_{c}": row[c] for c in columns}} for row in group])


def _by_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they set (one executemany per group)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    return list(groups.values())


RECORD_CHUNK = 250  # fetched resources recorded in one transaction while the batch's other fetches go on


def archive_batch(
    ctx: Context,
    ids: Sequence[str],
    force: bool = False,
    link_check_only: bool | None = None,
    job_id: str | None = None,
    threads: int | None = None,
    session: requests.Session | None = None,
    on_recorded: Callable[[list[Attempt]], None] | None = None,
) -> list[Attempt]:
    """Check/download a batch of resources and record every outcome: one read, the fetches on
    ARCHIVER_THREADS threads (each host within its concurrency and delay), and, while they
    run, one write per RECORD_CHUNK fetched resources (after their copies are synced);
    `on_recorded` gets each chunk once it is committed.

    No request at all while a stored copy is still fresh (Cache-Control/Expires), unless
    `force`; a resource that left its portal is not fetched. Repeating a batch is harmless.
    """
    now = utcnow()
    started = time.perf_counter()
    spent: Counter[str] = Counter()
    attempts = _plan(ctx, ids, now, force, link_check_only)
    spent["read"] = time.perf_counter() - started
    todo = [a for a in attempts if not a.skipped]
    if todo:
        for chunk in _fetched(ctx, todo, now, threads or ctx.settings.archiver_threads, session, RECORD_CHUNK):
            t = time.perf_counter()
            if any(a.result.stored is not None for a in chunk):
                ctx.storage.sync()  # the copies are on disk before the rows that name them commit
            spent["sync"] += time.perf_counter() - t
            t = time.perf_counter()
            _record(ctx, chunk, now, job_id)
            spent["write"] += time.perf_counter() - t
            if on_recorded is not None:
                t = time.perf_counter()
                on_recorded(chunk)
                spent["after"] += time.perf_counter() - t
    if len(ids) > 1:
        outcomes = Counter(a.outcome for a in attempts)
        log.info(
            "archiver: batch of %d in %.2fs (read %.2fs; while fetching: sync %.2fs, write %.2fs, then %.2fs): %s",
            len(ids), time.perf_counter() - started, spent["read"], spent["sync"], spent["write"], spent["after"], dict(outcomes),
        )
    for a in todo:
        if a.write_back and a.result.stored is not None and not a.duplicate:
            a.written_back = write_back_archival(ctx, a.resource_id)
    return attempts


def archive_resource(
    ctx: Context,
    resource_id: str,
    force: bool = False,
    link_check_only: bool | None = None,
    job_id: str | None = None,
    session: requests.Session | None = None,
    full_record: bool = True,
) -> dict[str, Any]:
    """Check/download one resource and record the outcome; returns its archival record
    (or, with full_record=False, just the outcome: what workers need)."""
    [attempt] = archive_batch(ctx, [resource_id], force=force, link_check_only=link_check_only, job_id=job_id, threads=1, session=session)
    if attempt.skipped == "missing":
        raise NotFound(f"no archive resource {resource_id}")
    record = _outcome(ctx, resource_id, attempt.outcome, full_record)
    if attempt.result is not None:
        record["status_id"] = attempt.result.status_id
        if attempt.written_back is not None:
            record["write_back"] = attempt.written_back
    return record


def _outcome(ctx: Context, resource_id: str, outcome: str, full_record: bool) -> dict[str, Any]:
    if full_record:
        return {**archival_record(ctx, resource_id), "outcome": outcome}
    return {"resource_id": resource_id, "outcome": outcome}


def _apply(ctx: Context, a: Attempt, result: FetchResult, now: datetime) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The archival record's new column values after this check, and the stored version to add (or None)."""
    cfg = ctx.settings
    sid = result.status_id
    v: dict[str, Any] = {
        "resource_id": a.resource_id, "status_id": sid, "status": STATUSES[sid], "reason": result.reason, "is_broken": is_status_broken(sid),
        "url_redirected_to": result.redirected, "attempts": result.attempts, "checked_at": now, "updated_at": now,
    }
    recheck = now + timedelta(seconds=cfg.archiver_recheck_seconds)
    version = None
    if sid in OK_STATUSES:
        v.update(last_success=now, failure_count=0, first_failure=None, checked_url=a.url)
        if result.etag or sid == 0:
            v["etag"] = result.etag
        if result.last_modified or sid == 0:
            v["last_modified"] = result.last_modified
        fresh = fresh_until(result.headers, now)
        v.update(fresh_until=fresh, next_check_at=max(recheck, fresh) if fresh else recheck)
        if result.stored is not None and not a.duplicate:
            info = result.stored
            v.update(cache_key=info.key, cache_url=cache_url_for(ctx, a.resource_id), size=info.size, md5=info.md5, sha256=info.sha256, mimetype=result.mimetype)
            version = {
                "resource_id": a.resource_id, "key": info.key, "size": info.size, "md5": info.md5, "sha256": info.sha256,
                "mimetype": result.mimetype, "etag": result.etag, "last_modified": result.last_modified, "created_at": now,
            }
        elif sid == 0:  # link check: what the headers said
            v.update(mimetype=result.mimetype, size=result.size)
    elif sid == 21:
        v.update(failure_count=0, first_failure=None, mimetype=result.mimetype, size=result.size, fresh_until=None, next_check_at=recheck)
    else:
        v.update(failure_count=a.prior_failures + 1, first_failure=a.first_failure or now, fresh_until=None, next_check_at=recheck)
    return v, version


def archival_record(ctx: Context, resource_id: str, versions: bool = True) -> dict[str, Any]:
    """A resource, its archival record and its stored versions, as a dict (for the API and CLI)."""
    with ctx.db.session() as s:
        res = s.get(Resource, resource_id)
        if res is None:
            raise NotFound(f"no archive resource {resource_id}")
        arch = s.get(Archival, resource_id)
        out: dict[str, Any] = {"resource": res.to_dict(), "archival": arch.to_dict() if arch else None}
        if versions:
            rows = s.scalars(
                select(ArchiveVersion).where(ArchiveVersion.resource_id == resource_id).order_by(ArchiveVersion.created_at.desc(), ArchiveVersion.id.desc())
            )
            out["versions"] = [v.to_dict() for v in rows]
        return out
