"""Turning a client's request into a job: duplicates, admission, callbacks, and what it made.

`request_job` is what the API (and the operator pages) call instead of `jobs.submit`:
- a request whose kind and canonical params match a succeeded job younger than the kind's
  cache max age (`CACHE_MAX_AGE_SECONDS`, `KIND_CACHE_MAX_AGE`, measured from its
  `finished_at`) and kept for longer than the download links it hands out
  (`DOWNLOAD_URL_TTL`) returns that job at once ("cached"). A cache hit never changes the
  job's `expires_at`: a result's life is fixed when it finishes, so cleanup's
  compare-and-set on `expires_at` never races a hit, and a client asking again later
  gets a new result once the old one is too old. An incremental request (params
  `mode: incremental`) is never answered from cache: each one makes a new delta;
- one matching a pending or running job joins it, its callback URLs merged ("joined");
- otherwise the export must fit in the storage left (`admission`), and a new job is made.

The check and the insert run under a lock on the request's dedupe key (an advisory lock on
PostgreSQL, the database write lock on SQLite), so two identical requests at the same
moment make one job.

A kind may register a `CachePolicy` (`CACHE_POLICIES`) to widen "equal": a lock key of its
own (e.g. per layer, so covering requests serialise too), a lookup for a finished job
that covers the request although its params differ, and an `extend` step run on every hit
that may push the hit's expiry forward with a compare-and-set on the `expires_at` it read
(cleanup's own compare-and-set then keeps the job; a hit that loses to cleanup is no hit).
The tiles family does this, as MapColonies' export service does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from . import admission, webhooks
from .db import utcnow
from .errors import InvalidRequest
from .expiry import cache_fresh
from .jobs import canonical_json, dedupe_key, dispatch
from .kinds import get_kind
from .models import ACTIVE_STATUSES, Job
from .visibility import AGENCY_PARAM, SERVICE_POINT_PARAM

MAX_DESCRIPTION = 1000
# No control characters except tab, newline and carriage return.
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"


def check_description(description: str | None) -> str | None:
    """A job's description as a person wrote it: at most MAX_DESCRIPTION printable characters."""
    if description is None:
        return None
    if len(description) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description must be at most {MAX_DESCRIPTION} characters, got {len(description)}", field="description")
    if not re.match(PRINTABLE, description):
        raise InvalidRequest("description must not hold control characters", field="description")
    return description

log = logging.getLogger(__name__)

# The API's export kinds and the job kinds that make them (issue 3's RAiD exports).
EXPORT_KINDS: dict[str, str] = {"public": "export_public", "private": "export_private", "tiles": "tiles"}
# The API's archive requests and their job kinds (issue 4's archiver).
ARCHIVE_KINDS: dict[str, str] = {"urls": "archive_urls", "portal": "sweep_portal"}



@dataclass(frozen=True)
class CachePolicy:
    lock_key: Callable[[str, dict[str, Any]], str]  # (kind, params) -> the key requests serialise on
    find_cached: Callable[[Session, Any, str, dict[str, Any], datetime], Job | None]  # (session, ctx, kind, params, now)
    extend: Callable[[Session, Any, Job, datetime], bool]  # on a hit; False: the job expired meanwhile


# Job kinds with a cache policy of their own (registered by their family when it loads).
CACHE_POLICIES: dict[str, CachePolicy] = {}


@dataclass
class Submission:
    job: Job
    outcome: str  # created | joined | cached

    @property
    def is_duplicate(self) -> bool:
        return self.outcome != "created"


def export_params(api_kind: str, scope: dict[str, Any], mode: str, fmt: str) -> tuple[str, dict[str, Any]]:
    """The job kind and params of an API export request (already shape-checked by the caller)."""
    kind = EXPORT_KINDS[api_kind]
    params: dict[str, Any] = {"mode": mode, "format": fmt}
    if api_kind == "public":
        params[AGENCY_PARAM] = scope["agency"]
    else:
        params[SERVICE_POINT_PARAM] = scope["servicePoint"]
    return kind, params


def reusable_from_cache(params: dict[str, Any]) -> bool:
    """Whether a finished job may answer an equal request; an incremental export never may."""
    return params.get("mode") != "incremental"


def find_active_or_fresh_duplicate(session: Session, kind: str, key: str, now: datetime, settings=None, cacheable: bool = True) -> Job | None:
    """The newest job with this dedupe key that is pending/running, or (when `cacheable`) succeeded,
    unexpired, intact and younger than the kind's cache max age (`settings`; None means no age limit)."""
    candidates = session.scalars(
        select(Job)
        .options(selectinload(Job.artifacts))
        .where(Job.kind == kind, Job.dedupe_key == key, Job.status.in_((*ACTIVE_STATUSES, "succeeded")))
        .order_by(Job.created_at.desc())
    )
    for job in candidates:
        if job.status in ACTIVE_STATUSES:
            return job
        if not cacheable:
            continue
        if settings is not None and not cache_fresh(settings, kind, job.finished_at, now):
            continue
        # A hit hands out download links valid for DOWNLOAD_URL_TTL: the result must outlive them,
        # or cleanup expires it under a client just told "completed" (410 on download).
        usable_until = now + timedelta(seconds=settings.download_url_ttl) if settings is not None else now
        if (job.expires_at is None or job.expires_at > usable_until) and all(a.deleted_at is None for a in job.artifacts):
            return job
    return None


def _lock(session: Session, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(key[:15], 16)})
    else:
        # Any write takes SQLite's database lock until commit; this one changes nothing.
        session.execute(update(Job).where(Job.id == "").values(status=Job.status))


def request_job(
    ctx,
    kind: str,
    params: dict[str, Any],
    requested_by: str | None = None,
    description: str | None = None,
    callback_urls: Iterable[str] = (),
    admit: bool = True,
    now: datetime | None = None,
    enqueue: bool = True,
) -> Submission:
    """Return the job that answers this request: an equal one already there, or a new one.

    With enqueue=False a new job is left pending for the caller to run (the reaper sends it
    to the broker if nobody does).

    Raises InvalidRequest (bad params or callback URLs) or admission.InsufficientStorage.
    """
    spec = get_kind(kind)
    description = check_description(description)
    params = json.loads(canonical_json(spec.normalize(dict(params or {}))))
    key = dedupe_key(kind, params)
    urls = webhooks.validate_callback_urls(ctx, list(callback_urls)) if callback_urls else []
    now = now or utcnow()
    policy = CACHE_POLICIES.get(kind)
    with ctx.db.session() as s:
        _lock(s, policy.lock_key(kind, params) if policy else key)
        dup = find_active_or_fresh_duplicate(s, kind, key, now, ctx.settings, reusable_from_cache(params))
        if policy is not None:
            if dup is not None and dup.status == "succeeded" and not policy.extend(s, ctx, dup, now):
                dup = None
            if dup is None:
                dup = policy.find_cached(s, ctx, kind, params, now)
        tell = None
        if dup is not None:
            if urls:
                tell = webhooks.attach(ctx, s, dup.id, urls)
            if dup.status == "succeeded":
                outcome = "cached"
            else:
                outcome = "joined"
            job_id = dup.id
        else:
            estimated = admission.admit(ctx, s, kind, params) if admit else admission.estimate(ctx, kind, params)
            job = Job(
                kind=kind, params=params, dedupe_key=key, status="pending",
                requested_by=requested_by, description=description, queued_at=now, created_at=now,
            )
            s.add(job)
            s.flush()
            if urls:
                webhooks.add_callbacks(s, job.id, urls)
            if estimated is not None:
                admission.record_estimate(s, job.id, estimated)
            outcome = "created"
            job_id = job.id
    if outcome == "created":
        log.info("job %s: submitted (%s) by %s", job_id, kind, requested_by or "-")
    if outcome == "created" and enqueue:
        try:
            dispatch(ctx, _load(ctx, job_id))
        except Exception:
            log.exception("job %s: enqueue failed; the reaper will enqueue it again", job_id)
    else:
        log.info("job %s: %s by an equal request from %s", job_id, outcome, requested_by or "-")
    if tell is not None:
        tell()  # the job had already ended: its notifications for the new URLs were committed above
    return Submission(job=_load(ctx, job_id), outcome=outcome)


def _load(ctx, job_id: str) -> Job:
    from .jobs import get

    return get(ctx, job_id)
