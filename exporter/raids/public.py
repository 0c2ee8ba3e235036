"""What of a raid the public may see: the whole record when open, an allowlist otherwise.

A raid is published in full when its access type is open, or when it is embargoed and
its embargo expired before the export's as-of date. Every other raid is reduced to the
handle, the create date and the access block, built from those columns alone; nothing is
copied from its JSON, so a field that is not on the allowlist cannot reach the public.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Text, and_, case, cast, null, or_

from .models import Raid
from .record import ACCESS_URIS, COAR

ISO_639 = "https://www.iso.org/standard/74575.html"


def published_in_full(access_type: str, embargo_expiry: date | None, as_of: date) -> bool:
    """True when the public may see the whole raid on `as_of` (open, or its embargo has passed)."""
    if access_type == "open":
        return True
    return access_type == "embargoed" and embargo_expiry is not None and embargo_expiry < as_of


def published_in_full_sql(as_of: date):
    """The same rule as published_in_full, as a SQL condition on raids."""
    return or_(Raid.access_type == "open", and_(Raid.access_type == "embargoed", Raid.embargo_expiry.is_not(None), Raid.embargo_expiry < as_of))


def public_json(as_of: date):
    """SQL: the raid's JSON as text when it is published in full on `as_of`, else NULL (the database withholds it)."""
    return case((published_in_full_sql(as_of), cast(Raid.record, Text)), else_=null())


def redacted(handle: str, created_at: datetime, access_type: str, statement: str | None, language: str | None, embargo_expiry: date | None) -> dict:
    """The public record of a closed raid: handle, create date and access block only."""
    access: dict = {"type": {"id": ACCESS_URIS.get(access_type, ACCESS_URIS["embargoed"]), "schemaUri": COAR}}
    if statement is not None:
        access["statement"] = {"text": str(statement)}
        if language:
            access["statement"]["language"] = {"id": str(language), "schemaUri": ISO_639}
    if embargo_expiry is not None:
        access["embargoExpiry"] = embargo_expiry.isoformat()
    return {
        "identifier": {"id": str(handle)},
        "metadata": {"created": int(created_at.timestamp())},
        "access": access,
    }
