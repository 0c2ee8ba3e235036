"""What an export covers: one registration agency (public) or one service point (private)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidRequest
from .archive import FORMATS
from .models import Raid, ServicePoint
from .record import ror_id
from .registry import get_agency, get_service_point

PUBLIC = "export_public"
PRIVATE = "export_private"
MODES = ("full", "incremental")


@dataclass(frozen=True)
class Scope:
    kind: str
    id: str
    service_points: tuple[int, ...] | None = None  # an agency's, once resolved

    def resolve(self, session: Session) -> Scope:
        """This scope with the agency's service points listed, so queries filter on a plain IN list.

        (A join or subquery there makes PostgreSQL sort every remaining raid for each page.)
        """
        if not self.public:
            return self
        ids = session.scalars(select(ServicePoint.id).where(ServicePoint.agency_id == self.id).order_by(ServicePoint.id)).all()
        return Scope(self.kind, self.id, tuple(ids))

    @property
    def public(self) -> bool:
        return self.kind == PUBLIC

    @property
    def entity_type(self) -> str:
        return "registration_agency" if self.public else "service_point"

    @property
    def param(self) -> str:
        return "agency" if self.public else "service_point"

    def condition(self):
        """SQL condition: the raids this scope covers."""
        if self.public:
            if self.service_points is not None:
                return Raid.service_point_id.in_(self.service_points)
            return Raid.service_point_id.in_(select(ServicePoint.id).where(ServicePoint.agency_id == self.id).scalar_subquery())
        return Raid.service_point_id == int(self.id)

    def check(self, session: Session) -> None:
        """Raise NotFound unless the agency or service point exists."""
        if self.public:
            get_agency(session, self.id)
        else:
            get_service_point(session, int(self.id))

    def owner(self, session: Session) -> tuple[str, str | None]:
        """The agency's name and ROR, or the service point's name (it has no public identifier)."""
        if self.public:
            agency = get_agency(session, self.id)
            return agency.name, agency.ror
        return get_service_point(session, int(self.id)).name, None

    def prefix(self, timestamp: str) -> str:
        return f"exports/{'public' if self.public else 'private'}/{self.id}/{timestamp}/"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.entity_type, "id": self.id}

    @classmethod
    def of(cls, kind: str, params: dict[str, Any]) -> Scope:
        return cls(kind, str(params["agency"] if kind == PUBLIC else params["service_point"]))


def _common(params: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    out["mode"] = params.pop("mode", "full")
    out["format"] = params.pop("format", "zip")
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    if out["mode"] not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", field="mode")
    if out["format"] not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
    return out


def normalize_public(params: dict[str, Any]) -> dict[str, Any]:
    """{agency: short ROR id, mode: full|incremental, format: zip|tar.gz, sitemaps: bool}."""
    agency = params.pop("agency", None)
    if not isinstance(agency, str) or not agency.strip():
        raise InvalidRequest("agency is required (the agency's ROR, e.g. https://ror.org/038sjwq14)", field="agency")
    sitemaps = params.pop("sitemaps", True)
    if not isinstance(sitemaps, bool):
        raise InvalidRequest("sitemaps must be true or false", field="sitemaps")
    return _common(params, {"agency": ror_id(agency), "sitemaps": sitemaps})


def normalize_private(params: dict[str, Any]) -> dict[str, Any]:
    """{service_point: number, mode: full|incremental, format: zip|tar.gz}."""
    sp = params.pop("service_point", None)
    if isinstance(sp, str) and sp.strip().isdigit():
        sp = int(sp)
    if not isinstance(sp, int) or isinstance(sp, bool) or sp <= 0:
        given = "" if sp is None else f", got {sp!r}"
        raise InvalidRequest(f"service_point must be a service point's id, a positive number such as 20000000{given}", field="service_point")
    return _common(params, {"service_point": sp})
