"""Archiving one resource: decide whether to ask, fetch, store, and record the outcome.

`archive_resource(ctx, resource_id)` is what the `exporter.archive_resource` task calls.
Every attempt updates the resource's archival record and writes a `task_status` row.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

from ..context import Context
from ..db import utcnow
from ..errors import NotFound
from ..jobs import record_task_status
from ..storage import Storage
from ..storage.base import ObjectInfo
from .fetch import FetchOptions, FetchResult, fetch
from .models import OK_STATUSES, STATUSES, Archival, ArchiveVersion, Portal, Resource, is_status_broken
from .policy import HostSlots, fresh_until
from .sessions import session_for

log = logging.getLogger(__name__)

TASK_TYPE = "archiver"
ENTITY = "resource"

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


def _load(s, resource_id: str) -> tuple[Resource, Archival, Portal | None]:
    res = s.get(Resource, resource_id)
    if res is None:
        raise NotFound(f"no archive resource {resource_id}")
    arch = s.get(Archival, resource_id)
    if arch is None:
        arch = Archival(resource_id=resource_id, failure_count=0, attempts=0, created_at=utcnow())
        s.add(arch)
        s.flush()
    portal = s.get(Portal, res.portal_id) if res.portal_id else None
    return res, arch, portal


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
    (or, with full_record=False, just the outcome: what workers need).

    No request at all while the stored copy is still fresh (Cache-Control/Expires), unless
    `force`. A resource that left its portal is not fetched.
    """
    now = utcnow()
    with ctx.db.session() as s:
        res, arch, portal = _load(s, resource_id)
        if res.gone_at is not None:
            log.info("archiver: resource %s left its portal; not fetched", resource_id)
            return _outcome(ctx, resource_id, "gone", full_record)
        url = res.url
        same_url = arch.checked_url == url
        if not force and same_url and arch.fresh_until and arch.fresh_until > now and arch.status_id in OK_STATUSES:
            arch.checked_at = now
            log.info("archiver: %s still fresh until %s; no request", url, arch.fresh_until)
            fresh = True
        else:
            fresh = False
        check_only = link_check_only if link_check_only is not None else (res.link_check_only or bool(portal and portal.link_check_only))
        have_copy = bool(arch.cache_key) or check_only
        etag = arch.etag if same_url and have_copy else None
        last_modified = arch.last_modified if same_url and have_copy else None
        previous_sha = arch.sha256 if same_url else None
        write_back = bool(portal and portal.write_back and portal.api_token)
    if fresh:
        return _outcome(ctx, resource_id, "fresh", full_record)

    options = FetchOptions.from_settings(ctx.settings, link_check_only=check_only)
    sink = StorageSink(ctx.storage, resource_id, now)
    http = session or session_for(ctx)
    host = (urlsplit(url).hostname or "").lower()
    try:
        if host:
            with host_slots(ctx).hold(host) as gate:
                result = fetch(http, url, options, sink, etag=etag, last_modified=last_modified, before_attempt=gate)
        else:
            result = fetch(http, url, options, sink)
    except Exception as exc:  # a bug or the database: recorded, never silent
        log.exception("archiver: %s: unexpected error", url)
        result = FetchResult(status_id=22, url=url, reason=f"{type(exc).__name__}: {exc}")

    duplicate = False
    if result.stored is not None and previous_sha and result.stored.sha256 == previous_sha:
        duplicate = True
        try:
            ctx.storage.delete(result.stored.key)
        except Exception:
            log.exception("archiver: could not delete duplicate %s", result.stored.key)
        result.status_id = 1
        result.reason = "Downloaded again: identical to the stored copy (same sha256), not stored twice"

    with ctx.db.session() as s:
        res, arch, portal = _load(s, resource_id)
        _apply(ctx, arch, res, result, now, duplicate)
        record_task_status(
            s, ENTITY, resource_id, TASK_TYPE,
            state="success" if result.status_id in OK_STATUSES else ("skipped" if result.status_id == 21 else "failure"),
            error=None if arch.is_broken is False else (result.reason or STATUSES[result.status_id]),
            value={"status_id": result.status_id, "status": STATUSES[result.status_id], "url": url, "http_status": result.http_status, "attempts": result.attempts},
            job_id=job_id,
        )
    log.info("archiver: %s -> %s %s%s", url, result.status_id, STATUSES[result.status_id], f" ({result.reason})" if result.reason else "")

    outcome = "stored" if result.stored is not None and not duplicate else STATUSES[result.status_id]
    record = _outcome(ctx, resource_id, outcome, full_record)
    record["status_id"] = result.status_id
    if write_back and result.stored is not None and not duplicate:
        from .ckan import write_back_archival

        record["write_back"] = write_back_archival(ctx, resource_id)
    return record


def _outcome(ctx: Context, resource_id: str, outcome: str, full_record: bool) -> dict[str, Any]:
    if full_record:
        return {**archival_record(ctx, resource_id), "outcome": outcome}
    return {"resource_id": resource_id, "outcome": outcome}


def _apply(ctx: Context, arch: Archival, res: Resource, result: FetchResult, now: datetime, duplicate: bool) -> None:
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
            arch_session = _session_of(arch)
            arch_session.add(version)
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


def _session_of(obj):
    from sqlalchemy.orm import object_session

    return object_session(obj)


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
