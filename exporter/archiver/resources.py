"""The resources table: ad-hoc URLs, a portal's resources (upsert, gone), and what is due."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from ..context import Context
from ..db import utcnow
from ..errors import InvalidRequest
from ..netsafety import UnsafeURL, check_url
from .models import Archival, Resource, resource_id_for

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


def upsert_url(ctx: Context, url: str, name: str | None = None, link_check_only: bool = False) -> str:
    """The ad-hoc resource for `url` (created on first use); returns its id."""
    rid = resource_id_for(None, url)
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
        for rid, row in by_id.items():
            res = existing.get(rid)
            if res is None:
                s.add(Resource(id=rid, portal_id=portal_id, created_at=now, updated_at=now, gone_at=None, link_check_only=False, **row))
                new += 1
                continue
            dirty = res.gone_at is not None
            for k, v in row.items():
                if getattr(res, k) != v:
                    setattr(res, k, v)
                    dirty = True
            res.gone_at = None
            res.updated_at = now if dirty else res.updated_at
            changed += dirty
    return new, changed


def mark_gone(ctx: Context, portal_id: str, seen: set[str], now: datetime) -> int:
    """Resources of the portal not seen in this sweep left it; returns how many newly gone."""
    gone = 0
    with ctx.db.session() as s:
        for res in s.scalars(select(Resource).where(Resource.portal_id == portal_id, Resource.gone_at.is_(None))):
            if res.id not in seen:
                res.gone_at = now
                gone += 1
    return gone


def due_ids(ctx: Context, portal_id: str | None, now: datetime, all_: bool = False) -> list[str]:
    """Ids of the portal's live resources whose next check time has come (or all of them)."""
    with ctx.db.session() as s:
        q = select(Resource.id).outerjoin(Archival, Archival.resource_id == Resource.id).where(Resource.gone_at.is_(None))
        q = q.where(Resource.portal_id == portal_id) if portal_id else q
        if not all_:
            q = q.where(or_(Archival.resource_id.is_(None), Archival.next_check_at.is_(None), Archival.next_check_at <= now))
        return list(s.scalars(q.order_by(Resource.id)))
