"""Reading a RAiD API record (RaidDto JSON): validation and the columns derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..errors import InvalidRequest

COAR = "https://vocabularies.coar-repositories.org/access_rights/"
ACCESS_URIS = {"open": COAR + "c_abf2/", "embargoed": COAR + "c_f1cf/"}
# COAR codes and older RAiD vocabulary names; "closed" is the old name of embargoed.
ACCESS_ALIASES = {"c_abf2": "open", "open": "open", "c_f1cf": "embargoed", "embargoed": "embargoed", "closed": "embargoed"}
ACCESS_TYPES = ("open", "embargoed")
ROR = "https://ror.org/"


@dataclass(frozen=True)
class RaidFields:
    """What the registry stores about a raid besides its JSON."""

    handle: str
    service_point_id: int
    agency_ror: str | None
    owner_ror: str | None
    title: str | None
    access_type: str
    access_statement: str | None
    access_statement_language: str | None
    embargo_expiry: date | None
    created_at: datetime | None


def access_type_of(type_id: Any) -> str:
    """'open' or 'embargoed' from a COAR access-rights URI (or a short name)."""
    if not isinstance(type_id, str) or not type_id.strip():
        raise InvalidRequest("access.type.id is missing", field="access.type.id")
    code = type_id.strip().rstrip("/").rsplit("/", 1)[-1].removesuffix(".json").lower()
    try:
        return ACCESS_ALIASES[code]
    except KeyError:
        raise InvalidRequest(f"access.type.id {type_id!r} is not a known access type (open c_abf2 or embargoed c_f1cf)", field="access.type.id") from None


def ror_id(ror: str) -> str:
    """The short form of a ROR (https://ror.org/038sjwq14 -> 038sjwq14)."""
    short = ror.strip().rstrip("/").rsplit("/", 1)[-1]
    if not short or not short.replace("-", "").isalnum():
        raise InvalidRequest(f"{ror!r} is not a ROR id", field="agency")
    return short


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object", field=where)
    return value


def _date(value: Any, where: str) -> date | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a date (YYYY-MM-DD)", field=where)
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidRequest(f"{where} {value!r} is not a date (YYYY-MM-DD)", field=where) from None


def _created(record: dict) -> datetime | None:
    meta = record.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("created"), (int, float)) and not isinstance(meta.get("created"), bool):
        try:
            return datetime.fromtimestamp(meta["created"], UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidRequest("metadata.created is not a valid epoch time", field="metadata.created") from None
    return None


def parse(record: Any) -> RaidFields:
    """Validate a RAiD API record and derive the registry's columns; InvalidRequest says what is wrong."""
    record = _obj(record, "record")
    ident = _obj(record.get("identifier"), "identifier")
    handle = ident.get("id")
    if not isinstance(handle, str) or not handle.strip():
        raise InvalidRequest("identifier.id (the handle) is missing", field="identifier.id")
    if len(handle) > 255:
        raise InvalidRequest("identifier.id is longer than 255 characters", field="identifier.id")
    owner = _obj(ident.get("owner"), "identifier.owner")
    sp = owner.get("servicePoint")
    if isinstance(sp, str) and sp.isdigit():
        sp = int(sp)
    if not isinstance(sp, int) or isinstance(sp, bool) or sp <= 0:
        raise InvalidRequest("identifier.owner.servicePoint must be a positive number", field="identifier.owner.servicePoint")
    agency = ident.get("registrationAgency")
    agency_ror = agency.get("id") if isinstance(agency, dict) and isinstance(agency.get("id"), str) else None
    access = _obj(record.get("access"), "access")
    atype = access_type_of(_obj(access.get("type"), "access.type").get("id"))
    statement = access.get("statement")
    text = lang = None
    if statement is not None:
        statement = _obj(statement, "access.statement")
        text = statement.get("text") if isinstance(statement.get("text"), str) else None
        language = statement.get("language")
        lang = language.get("id") if isinstance(language, dict) and isinstance(language.get("id"), str) else None
    expiry = _date(access.get("embargoExpiry"), "access.embargoExpiry")
    titles = record.get("title")
    title = None
    if isinstance(titles, list):
        for t in titles:
            if isinstance(t, dict) and isinstance(t.get("text"), str) and t["text"].strip():
                title = t["text"].strip()[:500]
                break
    for where, value in (("identifier.id", handle), ("title.text", title), ("access.statement.text", text), ("access.statement.language.id", lang)):
        if value is not None and "\x00" in value:
            raise InvalidRequest(f"{where} contains a NUL character, which databases cannot store", field=where)
    return RaidFields(
        handle=handle.strip(),
        service_point_id=sp,
        agency_ror=agency_ror,
        owner_ror=owner.get("id") if isinstance(owner.get("id"), str) else None,
        title=title,
        access_type=atype,
        access_statement=text,
        access_statement_language=lang[:64] if lang else None,
        embargo_expiry=expiry,
        created_at=_created(record),
    )
