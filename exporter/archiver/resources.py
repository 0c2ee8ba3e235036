"""The resources table: ad-hoc URLs, a portal's resources (upsert, gone), and what is due."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, text

from ..context import Context
from ..db import utcnow
from ..errors import InvalidRequest
from ..netsafety import UnsafeURL, check_url
from .models import Archival, Resource, resource_id_for

log = logging.getLogger(__name__)

MAX_URL = 4000


def validate_url(url: Any, field: str = "url") -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("a URL must be a non-empty string", field=field)
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidRequest(f"URL longer than {MAX_URL} characters", field=field)
    try:
        check_url(url)
    except UnsafeURL as exc:
        raise InvalidRequest(str(exc), field=field) from None
    return url


def adhoc_resource_id(secret_key: str, url: str) -> str:
    """An ad-hoc URL's resource id: keyed (HMAC-SHA256 with the secret key), so nobody who
    lacks the key can compute it from the URL; stable, so the same URL is one resource."""
    digest = hmac.new(secret_key.encode(), f"adhoc\n{url}".encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def upsert_url(ctx: Context, url: str, name: str | None = None, link_check_only: bool = False) -> str:
    """The ad-hoc resource for `url` (created on first use); returns its id."""
    rid = adhoc_resource_id(ctx.settings.secret_key, url)
    with ctx.db.session() as s:
        res = s.get(Resource, rid)
        if res is None:
            now = utcnow()
            s.add(Resource(id=rid, url=url, name=name or url, link_check_only=link_check_only, created_at=now, updated_at=now))
        elif res.link_check_only != link_check_only:
            res.link_check_only = link_check_only
            res.updated_at = utcnow()
    return rid


def upsert_portal_resources(ctx: Context, portal_id: str, rows: Iterable[dict[str, Any]], now: datetime) -> tuple[int, int]:
    """Insert or update a page of a portal's resources (dicts from ckan.resource_rows);
    returns (new, changed). A resource seen again is no longer gone."""
    rows = list(rows)
    new = changed = 0
    by_id = {resource_id_for(portal_id, r["external_id"]): r for r in rows}
    with ctx.db.session() as s:
        existing = {r.id: r for r in s.scalars(select(Resource).where(Resource.id.in_(list(by_id))))}
        fresh = [
            {"id": rid, "portal_id": portal_id, "created_at": now, "updated_at": now, "gone_at": None, "link_check_only": False,
             "missing_sweeps": 0, "missing_since": None, **row}
            for rid, row in by_id.items() if rid not in existing
        ]
        if fresh:  # one executemany (a portal's first sweep inserts every resource)
            s.execute(insert(Resource), fresh)
            new = len(fresh)
        for rid, row in by_id.items():
            res = existing.get(rid)
            if res is None:
                continue
            dirty = res.gone_at is not None
            for k, v in row.items():
                if getattr(res, k) != v:
                    setattr(res, k, v)
                    dirty = True
            res.gone_at = None
            res.missing_sweeps = 0
            res.missing_since = None
            res.updated_at = now if dirty else res.updated_at
            changed += dirty
    return new, changed


GONE_BATCH = 1000
ANALYZE_EVERY = 20_000  # new rows between two ANALYZEs while a first sweep fills the table


def refresh_statistics(ctx: Context) -> None:
    """PostgreSQL: ANALYZE the resource tables. During a portal's first sweep the table grows
    faster than autovacuum notices, and with the statistics of an empty table the planner scans
    the whole table for every page's lookup by id (quadratic: 100,000 resources took 140 s)."""
    if ctx.db.backend == "postgresql":
        with ctx.db.session() as s:
            s.execute(text("ANALYZE archive_resources"))
            s.execute(text("ANALYZE archivals"))




def _live_batches(ctx: Context, portal_id: str, batch: int = GONE_BATCH) -> Iterator[list[str]]:
    """Ids of the portal's live resources, in keyset batches (memory bounded by `batch`)."""
    last = ""
    while True:
        with ctx.db.session() as s:
            ids = list(
                s.scalars(
                    select(Resource.id)
                    .where(Resource.portal_id == portal_id, Resource.gone_at.is_(None), Resource.id > last)
                    .order_by(Resource.id)
                    .limit(batch)
                )
            )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _is_due_gone(missing_sweeps: int, missing_since: datetime | None, now: datetime, after_sweeps: int, after_days: int) -> bool:
    if missing_sweeps >= after_sweeps:
        return True
    return bool(after_days) and missing_since is not None and now - missing_since >= timedelta(days=after_days)


def _unreadable(private: bool, organization: str | None, readable_orgs: set[str] | None) -> bool:
    """A private resource the sweep could not have listed: the token may not read its organization
    (or nobody knows what the token may read). Its absence proves nothing."""
    return bool(private) and (readable_orgs is None or organization not in readable_orgs)


def sweep_gone(
    ctx: Context, portal_id: str, seen: set[str], now: datetime, complete: bool = True, batch: int = GONE_BATCH,
    readable_orgs: set[str] | None = None,
) -> dict[str, Any]:
    """Count one more absence for each live resource the sweep did not list, and mark gone
    those absent from ARCHIVER_GONE_AFTER_SWEEPS complete sweeps (or ARCHIVER_GONE_AFTER_DAYS).

    An incomplete enumeration changes nothing; neither does a sweep that would mark more
    than ARCHIVER_GONE_MAX_PERCENT of the portal's live resources gone (logged, and
    `refused` says why). A resource of a private dataset counts as absent only when the
    portal's token may still read its organization (`readable_orgs`, the names CKAN's
    organization_list_for_user gives; None: unknown, so no private resource counts): a
    token that lost access hides datasets that still exist. Those are counted in `unreadable`.
    Returns {"gone", "missing", "live", "unreadable", "refused"}.
    """
    st = ctx.settings
    after_sweeps, after_days, max_percent = st.archiver_gone_after_sweeps, st.archiver_gone_after_days, st.archiver_gone_max_percent
    outcome: dict[str, Any] = {"gone": 0, "missing": 0, "live": 0, "unreadable": 0, "refused": None}
    if not complete:
        outcome["refused"] = "the portal's listing was incomplete; no resource is counted missing"
        log.warning("archiver: portal %s: %s", portal_id, outcome["refused"])
        return outcome
    would_be_gone = live = 0
    for ids in _live_batches(ctx, portal_id, batch):
        live += len(ids)
        absent = [i for i in ids if i not in seen]
        if not absent:
            continue
        with ctx.db.session() as s:
            for row in s.execute(select(Resource.missing_sweeps, Resource.missing_since, Resource.private, Resource.organization).where(Resource.id.in_(absent))):
                if _unreadable(row.private, row.organization, readable_orgs):
                    outcome["unreadable"] += 1
                    continue
                would_be_gone += _is_due_gone((row.missing_sweeps or 0) + 1, row.missing_since or now, now, after_sweeps, after_days)
    if outcome["unreadable"]:
        log.warning(
            "archiver: portal %s: %d resource(s) of private datasets are not listed and the token may not read their organization; "
            "not counted missing (check the portal's token)", portal_id, outcome["unreadable"],
        )
    outcome["live"] = live
    if would_be_gone and would_be_gone * 100 > max_percent * live:
        outcome["refused"] = (
            f"{would_be_gone} of {live} resources would be marked gone, more than ARCHIVER_GONE_MAX_PERCENT={max_percent}%; "
            "none marked (check the portal and its token)"
        )
        log.warning("archiver: portal %s: %s", portal_id, outcome["refused"])
        return outcome
    for ids in _live_batches(ctx, portal_id, batch):
        absent = [i for i in ids if i not in seen]
        if not absent:
            continue
        with ctx.db.session() as s:
            for res in s.scalars(select(Resource).where(Resource.id.in_(absent))):
                if _unreadable(res.private, res.organization, readable_orgs):
                    continue
                res.missing_sweeps = (res.missing_sweeps or 0) + 1
                res.missing_since = res.missing_since or now
                outcome["missing"] += 1
                if _is_due_gone(res.missing_sweeps, res.missing_since, now, after_sweeps, after_days):
                    res.gone_at = now
                    outcome["gone"] += 1
    return outcome


def due_ids(ctx: Context, portal_id: str | None, now: datetime, all_: bool = False) -> list[str]:
    """Ids of the portal's live resources whose next check time has come (or all of them)."""
    with ctx.db.session() as s:
        q = select(Resource.id).outerjoin(Archival, Archival.resource_id == Resource.id).where(Resource.gone_at.is_(None))
        q = q.where(Resource.portal_id == portal_id) if portal_id else q
        if not all_:
            q = q.where(or_(Archival.resource_id.is_(None), Archival.next_check_at.is_(None), Archival.next_check_at <= now))
        return list(s.scalars(q.order_by(Resource.id)))
