"""Registered CKAN portals."""

from __future__ import annotations

import re

from sqlalchemy import func, or_, select

from ..config import as_http_url
from ..context import Context
from ..errors import ConfigError, InvalidRequest, NotFound
from .models import Portal

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


def add_portal(ctx: Context, name: str, base_url: str, api_token: str | None = None, write_back: bool = False, link_check_only: bool = False) -> Portal:
    """Register a portal, or update the one of that name."""
    if not NAME.match(name or ""):
        raise InvalidRequest("portal name: lower-case letters, digits, '.', '_' or '-' (at most 100)", field="name")
    try:
        base_url = as_http_url("base_url", base_url)
    except ConfigError:
        raise InvalidRequest(f"base URL must be an http(s) URL, got {base_url!r}", field="base_url") from None
    if write_back and not api_token:
        raise InvalidRequest("write-back needs an API token with edit rights on the portal", field="write_back")
    with ctx.db.session() as s:
        portal = s.scalars(select(Portal).where(Portal.name == name)).first()
        if portal is None:
            portal = Portal(name=name)
            s.add(portal)
        portal.base_url = base_url
        portal.api_token = api_token or None
        portal.write_back = write_back
        portal.link_check_only = link_check_only
        s.flush()
        return portal


def get_portal(ctx: Context, name_or_id: str) -> Portal:
    with ctx.db.session() as s:
        portal = s.scalars(select(Portal).where(or_(Portal.name == name_or_id, Portal.id == name_or_id))).first()
        if portal is None:
            raise NotFound(f"no portal {name_or_id!r} (see `exporter portals list`)")
        return portal


def list_portals(ctx: Context, q: str | None = None, limit: int | None = None) -> list[Portal]:
    """Portals by name; with q, those whose name or base URL contains q (any case)."""
    query = select(Portal).order_by(Portal.name).limit(limit)
    if q and q.strip():
        needle = q.strip().lower()
        query = query.where(or_(func.lower(Portal.name).contains(needle, autoescape=True), func.lower(Portal.base_url).contains(needle, autoescape=True)))
    with ctx.db.session() as s:
        return list(s.scalars(query))


def count_portals(ctx: Context) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Portal)) or 0
