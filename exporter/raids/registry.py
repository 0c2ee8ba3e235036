"""The domain API of the registry: every change to a raid goes through here.

A change bumps the raid's updated_at and version; a deletion leaves a tombstone
(deleted_at set, updated_at bumped) so incremental exports can list it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..errors import InvalidRequest, NotFound
from ..models import Job
from ..visibility import AGENCY_PARAM, SERVICE_POINT_PARAM
from .models import Raid, RegistrationAgency, ServicePoint
from .record import ROR, RaidFields, parse, ror_id

Outcome = Literal["created", "updated", "unchanged"]


def ensure_agency(session: Session, agency: str, name: str | None = None) -> RegistrationAgency:
    """The agency with this ROR (or short ROR id), created if it does not exist."""
    short = ror_id(agency)
    row = session.get(RegistrationAgency, short)
    if row is None:
        row = RegistrationAgency(id=short, ror=ROR + short, name=name or f"Registration agency {short}", created_at=utcnow())
        session.add(row)
        session.flush()
    return row


def ensure_service_point(session: Session, service_point_id: int, agency: str | None, name: str | None = None) -> ServicePoint:
    """The service point, created under `agency` if it does not exist; refuses one of another agency."""
    row = session.get(ServicePoint, service_point_id)
    if row is not None:
        if agency is not None and row.agency_id != ror_id(agency):
            raise InvalidRequest(f"service point {service_point_id} belongs to agency {row.agency_id}, not {ror_id(agency)}", field="identifier.owner.servicePoint")
        return row
    if agency is None:
        raise InvalidRequest(f"service point {service_point_id} is unknown and the record names no registration agency", field="identifier.owner.servicePoint")
    ag = ensure_agency(session, agency)
    row = ServicePoint(id=service_point_id, agency_id=ag.id, name=name or f"Service point {service_point_id}", created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def get_agency(session: Session, agency: str) -> RegistrationAgency:
    row = session.get(RegistrationAgency, ror_id(agency))
    if row is None:
        raise NotFound(f"no registration agency {agency}")
    return row


def get_service_point(session: Session, service_point_id: int) -> ServicePoint:
    row = session.get(ServicePoint, service_point_id)
    if row is None:
        raise NotFound(f"no service point {service_point_id}")
    return row


MAX_SERVICE_POINT_ID = 2**63 - 1  # a BIGINT


def _matches(q: str, *columns) -> Any:
    """Any of `columns` contains q literally, in any case."""
    needle = q.strip().lower()
    return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))


def count_agencies(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RegistrationAgency)) or 0


def list_agencies(session: Session, q: str | None = None, limit: int | None = 50) -> list[RegistrationAgency]:
    """Agencies by name; with q, those whose name, short id or ROR contains q (any case)."""
    query = select(RegistrationAgency).order_by(func.lower(RegistrationAgency.name), RegistrationAgency.id).limit(limit)
    if q and q.strip():
        query = query.where(_matches(q, RegistrationAgency.name, RegistrationAgency.id, RegistrationAgency.ror))
    return list(session.scalars(query))


def agencies_by_id(session: Session, ids: Iterable[str]) -> dict[str, RegistrationAgency]:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(RegistrationAgency).where(RegistrationAgency.id.in_(ids)))}


def find_agency(session: Session, text: str) -> RegistrationAgency | None:
    """The agency a person means by `text`: its ROR, short ROR id, or its exact name (any case) if only one has it."""
    text = text.strip()
    short = text.rstrip("/").rsplit("/", 1)[-1]
    if short and short.replace("-", "").isalnum() and (row := session.get(RegistrationAgency, short)) is not None:
        return row
    named = session.scalars(select(RegistrationAgency).where(func.lower(RegistrationAgency.name) == text.lower()).limit(2)).all()
    return named[0] if len(named) == 1 else None


def count_service_points(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ServicePoint)) or 0


def list_service_points(session: Session, q: str | None = None, limit: int | None = 50) -> list[tuple[ServicePoint, RegistrationAgency]]:
    """Service points with their agency, by name; with q, those whose name, id or agency's name contains q."""
    query = (
        select(ServicePoint, RegistrationAgency)
        .join(RegistrationAgency, ServicePoint.agency_id == RegistrationAgency.id)
        .order_by(func.lower(ServicePoint.name), ServicePoint.id)
        .limit(limit)
    )
    if q and q.strip():
        query = query.where(_matches(q, ServicePoint.name, cast(ServicePoint.id, String), RegistrationAgency.name, RegistrationAgency.id))
    return [(sp, ag) for sp, ag in session.execute(query)]


def service_points_by_id(session: Session, ids: Iterable[int]) -> dict[int, tuple[ServicePoint, RegistrationAgency]]:
    """Each known service point of `ids`, with its agency."""
    ids = {i for i in ids if 0 < i <= MAX_SERVICE_POINT_ID}
    if not ids:
        return {}
    query = select(ServicePoint, RegistrationAgency).join(RegistrationAgency, ServicePoint.agency_id == RegistrationAgency.id).where(ServicePoint.id.in_(ids))
    return {sp.id: (sp, ag) for sp, ag in session.execute(query)}


def find_service_point(session: Session, text: str) -> ServicePoint | None:
    """The service point a person means by `text`: its number, or its exact name (any case) if only one has it."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        number = int(text)
        return session.get(ServicePoint, number) if 0 < number <= MAX_SERVICE_POINT_ID else None
    named = session.scalars(select(ServicePoint).where(func.lower(ServicePoint.name) == text.lower()).limit(2)).all()
    return named[0] if len(named) == 1 else None


def get_raid(session: Session, handle: str, include_deleted: bool = False) -> Raid:
    raid = session.scalars(select(Raid).where(Raid.handle == handle)).first()
    if raid is None or (raid.deleted_at is not None and not include_deleted):
        raise NotFound(f"no raid {handle}")
    return raid


def _apply(raid: Raid, record: dict[str, Any], fields: RaidFields) -> None:
    raid.record = record
    raid.service_point_id = fields.service_point_id
    raid.title = fields.title
    raid.access_type = fields.access_type
    raid.access_statement = fields.access_statement
    raid.access_statement_language = fields.access_statement_language
    raid.embargo_expiry = fields.embargo_expiry


def save_raid(session: Session, record: Any, now: datetime | None = None, create_missing: bool = True) -> tuple[Raid, Outcome]:
    """Insert or update the raid with this record's handle (an upsert by handle).

    An identical record changes nothing; anything else bumps updated_at and version, and
    revives a deleted raid. Unknown service points (and agencies) are created when
    `create_missing`, else refused.
    """
    fields = parse(record)
    now = now or utcnow()
    if create_missing:
        ensure_service_point(session, fields.service_point_id, fields.agency_ror)
    else:
        sp = get_service_point(session, fields.service_point_id)
        if fields.agency_ror and sp.agency_id != ror_id(fields.agency_ror):
            raise InvalidRequest(f"service point {sp.id} belongs to agency {sp.agency_id}, not {ror_id(fields.agency_ror)}", field="identifier.owner.servicePoint")
    raid = session.scalars(select(Raid).where(Raid.handle == fields.handle)).first()
    if raid is None:
        raid = Raid(handle=fields.handle, created_at=fields.created_at or now, updated_at=now, version=1)
        _apply(raid, record, fields)
        session.add(raid)
        session.flush()
        return raid, "created"
    if raid.deleted_at is None and raid.record == record and raid.service_point_id == fields.service_point_id:
        return raid, "unchanged"
    _apply(raid, record, fields)
    raid.deleted_at = None
    raid.updated_at = max(now, raid.updated_at)
    raid.version = raid.version + 1
    session.flush()
    return raid, "updated"


def update_raid(session: Session, handle: str, changes: dict[str, Any], now: datetime | None = None) -> Raid:
    """Change top-level fields of an existing raid's record (e.g. {"title": [...]})."""
    raid = get_raid(session, handle)
    record = dict(raid.record)
    record.update(changes)
    if parse(record).handle != handle:
        raise InvalidRequest("the handle of a raid cannot change", field="identifier.id")
    raid, _ = save_raid(session, record, now=now, create_missing=False)
    return raid


def delete_raid(session: Session, handle: str, now: datetime | None = None) -> Raid:
    """Delete a raid, leaving a tombstone: deleted_at set, updated_at and version bumped."""
    raid = get_raid(session, handle)
    now = now or utcnow()
    raid.deleted_at = now
    raid.updated_at = max(now, raid.updated_at)
    raid.version = raid.version + 1
    session.flush()
    return raid


def agency_label(agency: RegistrationAgency) -> str:
    """How a person reads an agency: its name and, beside it, its id."""
    return f"{agency.name} ({agency.id})"


def service_point_label(sp: ServicePoint, agency: RegistrationAgency) -> str:
    return f"{sp.name} ({sp.id}) of {agency_label(agency)}"


def service_point_number(value: Any) -> int | None:
    """A service point id given as a number or a string of digits; None for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def scope_labels(session: Session, jobs: Iterable[Job]) -> dict[str, tuple[str, str]]:
    """For each job that names an agency or a service point: (what it is, its name beside its id)."""
    jobs = list(jobs)
    agency_ids = {a for j in jobs if isinstance(a := (j.params or {}).get(AGENCY_PARAM), str)}
    sp_ids = {n for j in jobs if (n := service_point_number((j.params or {}).get(SERVICE_POINT_PARAM))) is not None}
    agencies = agencies_by_id(session, agency_ids)
    points = service_points_by_id(session, sp_ids)
    labels = {}
    for j in jobs:
        agency = (j.params or {}).get(AGENCY_PARAM)
        number = service_point_number((j.params or {}).get(SERVICE_POINT_PARAM))
        if isinstance(agency, str):
            labels[j.id] = ("Registration agency", agency_label(agencies[agency]) if agency in agencies else f"{agency} (not registered)")
        elif number is not None:
            labels[j.id] = ("Service point", service_point_label(*points[number]) if number in points else f"{number} (not registered)")
    return labels
