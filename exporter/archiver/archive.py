"""Archiving one resource: decide whether to ask, fetch, store, and record the outcome.

`archive_resource(ctx, resource_id)` is what the `exporter.archive_resource` task calls.
Every attempt updates the resource's archival record and writes a `task_status` row.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

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
        with self.storage.open_write(self.key, mimetype) as handle:
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


def _plan(ctx: Context, ids: Sequence[str], now: datetime, force: bool, link_check_only: bool | None) -> list[Attempt]:
    """Read what every resource of the batch needs (one transaction); fresh ones are marked checked."""
    planned: dict[str, Attempt] = {}
    with ctx.db.session() as s:
        for i in range(0, len(ids), IN_BATCH):
            chunk = list(ids[i : i + IN_BATCH])
            rows = s.execute(
                select(Resource, Archival, Portal)
                .outerjoin(Archival, Archival.resource_id == Resource.id)
                .outerjoin(Portal, Portal.id == Resource.portal_id)
                .where(Resource.id.in_(chunk))
            ).all()
            for res, arch, portal in rows:
                if arch is None:
                    arch = _new_archival(res.id)
                    s.add(arch)
                planned[res.id] = _attempt_for(res, arch, portal, now, force, link_check_only)
    return [planned.get(rid) or Attempt(rid, skipped="missing") for rid in ids]


def _attempt_for(res: Resource, arch: Archival, portal: Portal | None, now: datetime, force: bool, link_check_only: bool | None) -> Attempt:
    if res.gone_at is not None:
        log.info("archiver: resource %s left its portal; not fetched", res.id)
        return Attempt(res.id, res.url, skipped="gone")
    same_url = arch.checked_url == res.url
    if not force and same_url and arch.fresh_until and arch.fresh_until > now and arch.status_id in OK_STATUSES:
        arch.checked_at = now
        log.info("archiver: %s still fresh until %s; no request", res.url, arch.fresh_until)
        return Attempt(res.id, res.url, skipped="fresh")
    check_only = link_check_only if link_check_only is not None else (res.link_check_only or bool(portal and portal.link_check_only))
    have_copy = bool(arch.cache_key) or check_only
    return Attempt(
        res.id, res.url,
        etag=arch.etag if same_url and have_copy else None,
        last_modified=arch.last_modified if same_url and have_copy else None,
        previous_sha=arch.sha256 if same_url else None,
        check_only=check_only,
        write_back=bool(portal and portal.write_back and portal.api_token),
    )


def _fetch(ctx: Context, attempt: Attempt, now: datetime, http: requests.Session, gate: Callable[[], None] | None) -> None:
    """Fetch one resource into storage; an identical body (same sha256) is not kept twice."""
    options = FetchOptions.from_settings(ctx.settings, link_check_only=attempt.check_only)
    sink = StorageSink(ctx.storage, attempt.resource_id, now)
    try:
        result = fetch(http, attempt.url, options, sink, etag=attempt.etag, last_modified=attempt.last_modified, before_attempt=gate)
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


def _fetch_all(ctx: Context, attempts: list[Attempt], now: datetime, threads: int, session: requests.Session | None) -> None:
    """Fetch on up to `threads` threads, each host through at most its concurrency of lanes;
    a lane holds one of the host's slots (across processes) for all of its resources."""
    by_host: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_host[a.host].append(a)
    slots = host_slots(ctx)
    lanes: list[tuple[str, list[Attempt]]] = []
    for host, items in by_host.items():
        n = max(1, min(threads, slots.concurrency, len(items)))
        lanes += [(host, items[k::n]) for k in range(n)]

    def run(host: str, items: list[Attempt]) -> None:
        http = session or session_for(ctx)
        if not host:  # no host to be polite to: the fetch refuses the URL itself
            for a in items:
                _fetch(ctx, a, now, http, None)
            return
        with slots.hold(host) as gate:
            for a in items:
                _fetch(ctx, a, now, http, gate)

    if threads <= 1 or len(lanes) == 1:
        for host, items in lanes:
            run(host, items)
        return
    pool = _pool(threads)
    for future in [pool.submit(run, host, items) for host, items in lanes]:
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
    """Every outcome of the batch in one transaction: archival records, stored versions, task_status rows."""
    by_id = {a.resource_id: a for a in attempts}
    with ctx.db.session() as s:
        for i in range(0, len(attempts), IN_BATCH):
            chunk = [a.resource_id for a in attempts[i : i + IN_BATCH]]
            found = {res.id: (res, arch) for res, arch in s.execute(
                select(Resource, Archival).outerjoin(Archival, Archival.resource_id == Resource.id).where(Resource.id.in_(chunk))
            )}
            statuses = {ts.entity_id: ts for ts in s.scalars(
                select(TaskStatus).where(TaskStatus.entity_type == ENTITY, TaskStatus.task_type == TASK_TYPE, TaskStatus.key == "status", TaskStatus.entity_id.in_(chunk))
            )}
            for rid in chunk:
                if rid not in found:
                    continue  # deleted meanwhile: nothing to record it on
                res, arch = found[rid]
                if arch is None:
                    arch = _new_archival(rid)
                    s.add(arch)
                a = by_id[rid]
                result = a.result
                _apply(ctx, s, arch, res, result, now, a.duplicate)
                ts = statuses.get(rid)
                if ts is None:
                    ts = TaskStatus(entity_type=ENTITY, entity_id=rid, task_type=TASK_TYPE, key="status", failure_count=0)
                    s.add(ts)
                error = None if arch.is_broken is False else (result.reason or STATUSES[result.status_id])
                ts.state = "success" if result.status_id in OK_STATUSES else ("skipped" if result.status_id == 21 else "failure")
                ts.error = error
                ts.value = {"status_id": result.status_id, "status": STATUSES[result.status_id], "url": a.url, "http_status": result.http_status, "attempts": result.attempts}
                ts.job_id = job_id
                ts.failure_count = (ts.failure_count or 0) + 1 if error else 0
                ts.last_updated = now
                log.info("archiver: %s -> %s %s%s", a.url, result.status_id, STATUSES[result.status_id], f" ({result.reason})" if result.reason else "")


def archive_batch(
    ctx: Context,
    ids: Sequence[str],
    force: bool = False,
    link_check_only: bool | None = None,
    job_id: str | None = None,
    threads: int | None = None,
    session: requests.Session | None = None,
) -> list[Attempt]:
    """Check/download a batch of resources and record every outcome: one read, the fetches on
    ARCHIVER_THREADS threads (each host within its concurrency and delay), one write.

    No request at all while a stored copy is still fresh (Cache-Control/Expires), unless
    `force`; a resource that left its portal is not fetched. Repeating a batch is harmless.
    """
    now = utcnow()
    attempts = _plan(ctx, ids, now, force, link_check_only)
    todo = [a for a in attempts if not a.skipped]
    if todo:
        _fetch_all(ctx, todo, now, threads or ctx.settings.archiver_threads, session)
        _record(ctx, todo, now, job_id)
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


def _apply(ctx: Context, s, arch: Archival, res: Resource, result: FetchResult, now: datetime, duplicate: bool) -> None:
    cfg = ctx.settings
    sid = result.status_id
    arch.status_id = sid
    arch.status = STATUSES[sid]
    arch.reason = result.reason
    arch.is_broken = is_status_broken(sid)
    arch.url_redirected_to = result.redirected
    arch.attempts = result.attempts
    arch.checked_at = now
    arch.updated_at = now
    recheck = now + timedelta(seconds=cfg.archiver_recheck_seconds)
    if sid in OK_STATUSES:
        arch.last_success = now
        arch.failure_count = 0
        arch.first_failure = None
        if result.etag or sid == 0:
            arch.etag = result.etag
        if result.last_modified or sid == 0:
            arch.last_modified = result.last_modified
        arch.checked_url = res.url
        arch.fresh_until = fresh_until(result.headers, now)
        arch.next_check_at = max(recheck, arch.fresh_until) if arch.fresh_until else recheck
        if result.stored is not None and not duplicate:
            info = result.stored
            arch.cache_key = info.key
            arch.cache_url = cache_url_for(ctx, res.id)
            arch.size, arch.md5, arch.sha256 = info.size, info.md5, info.sha256
            arch.mimetype = result.mimetype
            version = ArchiveVersion(
                resource_id=res.id, key=info.key, size=info.size, md5=info.md5, sha256=info.sha256,
                mimetype=result.mimetype, etag=result.etag, last_modified=result.last_modified, created_at=now,
            )
            s.add(version)
        elif sid == 0:  # link check: what the headers said
            arch.mimetype = result.mimetype
            arch.size = result.size
    elif sid == 21:
        arch.failure_count = 0
        arch.first_failure = None
        arch.mimetype = result.mimetype
        arch.size = result.size
        arch.fresh_until = None
        arch.next_check_at = recheck
    else:
        arch.failure_count = (arch.failure_count or 0) + 1
        arch.first_failure = arch.first_failure or now
        arch.fresh_until = None
        arch.next_check_at = recheck


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
