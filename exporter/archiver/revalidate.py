"""Bulk revalidation for sweeps: a conditional GET per stored resource, 304s recorded in bulk.

Most resources of a portal do not change between sweeps. For those, an archive task per
resource would cost a broker message and several transactions to learn "304 Not
Modified". The sweep asks these questions itself (same safe session, same per-host slots
and delay), records every 304 as "Content has not changed" in one transaction per batch,
and sends archive tasks only for the resources that answered anything else.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update

from ..context import Context
from ..db import utcnow
from ..models import TaskStatus
from ..netsafety import request_following
from .archive import ENTITY, TASK_TYPE, host_slots
from .fetch import conditional_headers
from .models import OK_STATUSES, STATUSES, Archival, Portal, Resource
from .policy import fresh_until
from .sessions import session_for

log = logging.getLogger(__name__)

MAX_THREADS = 16  # hosts are checked in parallel, each by at most its own concurrency


def _candidates(ctx: Context, ids: Sequence[str]) -> list[tuple[str, str, str | None, str | None]]:
    """(id, url, etag, last_modified) of resources a conditional request can settle."""
    out = []
    with ctx.db.session() as s:
        for i in range(0, len(ids), 500):
            rows = s.execute(
                select(Resource.id, Resource.url, Resource.link_check_only, Portal.link_check_only.label("portal_check_only"),
                       Archival.checked_url, Archival.etag, Archival.last_modified, Archival.cache_key, Archival.status_id)
                .join(Archival, Archival.resource_id == Resource.id)
                .outerjoin(Portal, Portal.id == Resource.portal_id)
                .where(Resource.id.in_(list(ids[i : i + 500])))
            )
            for r in rows:
                check_only = r.link_check_only or bool(r.portal_check_only)
                if r.checked_url == r.url and (r.etag or r.last_modified) and (r.cache_key or check_only) and r.status_id in OK_STATUSES:
                    out.append((r.id, r.url, r.etag, r.last_modified))
    return out


def revalidate(ctx: Context, ids: Sequence[str], workers: int = 4) -> tuple[list[str], int]:
    """Settle what a 304 can settle; returns (ids that still need an archive task, how many got 304)."""
    cands = _candidates(ctx, ids)
    settled: dict[str, tuple[str, dict[str, str]]] = {}
    by_host: dict[str, list[tuple[str, str, str | None, str | None]]] = defaultdict(list)
    for c in cands:
        by_host[(urlsplit(c[1]).hostname or "").lower()].append(c)
    cfg = ctx.settings
    lanes = max(1, min(workers, cfg.archiver_host_concurrency))

    def check(host: str, items: list[tuple[str, str, str | None, str | None]]) -> None:
        session = session_for(ctx)
        with host_slots(ctx).hold(host) as gate:
            for rid, url, etag, last_modified in items:
                gate()
                try:
                    followed = request_following(session, "GET", url, max_redirects=cfg.archiver_max_redirects, headers=conditional_headers(etag, last_modified),
                                                 stream=True, timeout=(cfg.archiver_connect_timeout, cfg.archiver_read_timeout))
                except Exception as exc:  # the archive task retries and records it properly
                    log.debug("revalidate %s: %s", url, exc)
                    continue
                with followed.response as resp:
                    if resp.status_code == 304:
                        settled[rid] = (followed.url, {k.lower(): v for k, v in resp.headers.items()})

    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, lanes * max(1, len(by_host))), thread_name_prefix="revalidate") as pool:
        futures = []
        for host, items in by_host.items():
            for lane in range(lanes):
                part = items[lane::lanes]
                if part and host:
                    futures.append(pool.submit(check, host, part))
        for f in futures:
            f.result()
    if settled:
        _record(ctx, {c[0]: c for c in cands}, settled)
    rest = [rid for rid in ids if rid not in settled]
    return rest, len(settled)


def _record(ctx: Context, cands: dict, settled: dict[str, tuple[str, dict[str, str]]]) -> None:
    now = utcnow()
    recheck = now + timedelta(seconds=ctx.settings.archiver_recheck_seconds)
    rows = []
    for rid, (final_url, headers) in settled.items():
        _, url, etag, last_modified = cands[rid]
        fresh = fresh_until(headers, now)
        rows.append({
            "resource_id": rid, "status_id": 1, "status": STATUSES[1], "reason": None, "is_broken": False,
            "url_redirected_to": final_url if final_url != url else None, "attempts": 1, "checked_at": now, "updated_at": now,
            "last_success": now, "failure_count": 0, "first_failure": None, "fresh_until": fresh,
            "next_check_at": max(recheck, fresh) if fresh else recheck,
            "etag": headers.get("etag") or etag, "last_modified": headers.get("last-modified") or last_modified,
        })
    with ctx.db.session() as s:
        s.execute(update(Archival), rows)
        existing = {}
        ids = list(settled)
        for i in range(0, len(ids), 500):
            for ts in s.scalars(select(TaskStatus).where(TaskStatus.entity_type == ENTITY, TaskStatus.task_type == TASK_TYPE, TaskStatus.key == "status", TaskStatus.entity_id.in_(ids[i : i + 500]))):
                existing[ts.entity_id] = ts
        for rid in ids:
            ts = existing.get(rid)
            if ts is None:
                ts = TaskStatus(entity_type=ENTITY, entity_id=rid, task_type=TASK_TYPE, key="status")
                s.add(ts)
            ts.state, ts.error, ts.failure_count, ts.last_updated, ts.job_id = "success", None, 0, now, None
            ts.value = {"status_id": 1, "status": STATUSES[1], "url": cands[rid][1], "http_status": 304, "attempts": 1}
