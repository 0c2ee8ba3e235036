"""OAI-PMH 2.0 data provider over the search index: every verb, every error, keyset resumption tokens.

Headers come from raid_search: the datestamp is when the raid's public view last changed
(second granularity; `from`/`until` filter on it, both inclusive), the set is the raid's
registration agency (`agency:<short ROR id>`), and deleted raids stay as
`status="deleted"` headers forever (deletedRecord: persistent). Metadata is computed at
harvest time by the database from the allowlist (exporter.raids.public), as an export
does: a raid that is not public in full on that day gives only its public fields.

Lists are paged by keyset on (datestamp, raid id), never by offset: a record that changes
during a harvest moves behind the cursor and is sent again later, none is skipped. The
resumption token carries the cursor, the request's arguments and an expiry, signed with
SECRET_KEY so it cannot be altered. Errors are answered with HTTP 200, as the protocol
requires; the web layer only passes the arguments in and the bytes out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import itsdangerous
from lxml import etree
from sqlalchemy import and_, func, literal, select, tuple_

from ..context import Context
from ..db import UTCDateTime
from ..raids.datacite import NS as DATACITE_NS
from ..raids.datacite import SCHEMA_LOCATION as DATACITE_SCHEMA
from ..raids.datacite import datacite_xml
from ..raids.models import Raid, RegistrationAgency
from ..raids.registry import agencies_by_id
from .dublincore import OAI_DC, OAI_DC_SCHEMA, dc_xml
from .index import _source, harvest_time, public_record
from .models import RaidSearch

OAI = "http://www.openarchives.org/OAI/2.0/"
OAI_SCHEMA = "http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
FORMATS = {"oai_dc": (OAI_DC_SCHEMA, OAI_DC), "oai_datacite": (DATACITE_SCHEMA, DATACITE_NS)}
SET_PREFIX = "agency:"
# verb: (required arguments, optional arguments); a resumptionToken is exclusive
VERBS: dict[str, tuple[set[str], set[str]]] = {
    "Identify": (set(), set()),
    "ListMetadataFormats": (set(), {"identifier"}),
    "ListSets": (set(), {"resumptionToken"}),
    "GetRecord": ({"identifier", "metadataPrefix"}, set()),
    "ListIdentifiers": ({"metadataPrefix"}, {"from", "until", "set", "resumptionToken"}),
    "ListRecords": ({"metadataPrefix"}, {"from", "until", "set", "resumptionToken"}),
}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECOND = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # what XML 1.0 cannot hold
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


class OAIError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def oai_identifier(handle: str) -> str:
    """The record's OAI identifier: the handle when it is a URI already, else info:hdl/<handle>."""
    return handle if _SCHEME.match(handle) and not handle.startswith("info:hdl/") else "info:hdl/" + handle


def _handle_of(identifier: str) -> str:
    return identifier[len("info:hdl/") :] if identifier.startswith("info:hdl/") else identifier


# -- resumption tokens -----------------------------------------------------------------------


TOKEN_SALT = "exporter.oai.resumption-token"


def _tokens(ctx: Context) -> itsdangerous.URLSafeSerializer:
    """Resumption tokens: the list's state as signed JSON (a salt of their own, constant-time check)."""
    return itsdangerous.URLSafeSerializer(ctx.settings.secret_key, salt=TOKEN_SALT, signer_kwargs={"digest_method": hashlib.sha256})


def make_token(ctx: Context, state: dict[str, Any]) -> str:
    return _tokens(ctx).dumps(state)


def read_token(ctx: Context, token: str, verb: str, now: datetime) -> dict[str, Any]:
    try:
        state = _tokens(ctx).loads(token)
    except itsdangerous.BadSignature:
        raise OAIError("badResumptionToken", "the resumptionToken is not one this repository issued") from None
    except itsdangerous.BadData:
        raise OAIError("badResumptionToken", "the resumptionToken cannot be read") from None
    if not isinstance(state, dict):
        raise OAIError("badResumptionToken", "the resumptionToken cannot be read")
    if state.get("verb") != verb:
        raise OAIError("badResumptionToken", f"the resumptionToken belongs to {state.get('verb')}, not {verb}")
    if state["expires"] < now.timestamp():
        raise OAIError("badResumptionToken", "the resumptionToken has expired; start the list again")
    return state


# -- arguments ------------------------------------------------------------------------------


def _arguments(params: Sequence[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    if any(_NOT_XML.search(k) or _NOT_XML.search(v) for k, v in params):
        raise OAIError("badArgument", "an argument's name or value holds characters XML cannot carry (control characters)")
    verbs = [v for k, v in params if k == "verb"]
    if len(verbs) != 1:
        raise OAIError("badVerb", "the verb argument is missing" if not verbs else "the verb argument is repeated")
    verb = verbs[0]
    if verb not in VERBS:
        raise OAIError("badVerb", f"{verb!r} is not an OAI-PMH verb")
    args: dict[str, str] = {}
    for key, value in params:
        if key == "verb":
            continue
        if key in args:
            raise OAIError("badArgument", f"the argument {key} is repeated")
        args[key] = value
    required, optional = VERBS[verb]
    unknown = set(args) - required - optional
    if unknown:
        raise OAIError("badArgument", f"{verb} does not take {', '.join(sorted(unknown))}")
    if "resumptionToken" in args:
        if len(args) > 1:
            raise OAIError("badArgument", "resumptionToken is an exclusive argument")
        return verb, args
    missing = required - set(args)
    if missing:
        raise OAIError("badArgument", f"{verb} needs {', '.join(sorted(missing))}")
    return verb, args


def _when(value: str, name: str) -> tuple[datetime, str]:
    """A from/until value and its granularity ('day' or 'second')."""
    try:
        if _DAY.match(value):
            return datetime.fromisoformat(value + "T00:00:00+00:00"), "day"
        if _SECOND.match(value):
            return datetime.fromisoformat(value.replace("Z", "+00:00")), "second"
    except ValueError:
        pass
    raise OAIError("badArgument", f"{name} must be YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ (UTC), got {value!r}")


def _window(args: dict[str, str]) -> tuple[str | None, str | None]:
    """from (inclusive) and until (exclusive) as ISO datetimes, from the inclusive OAI arguments."""
    low = _when(args["from"], "from") if "from" in args else None
    high = _when(args["until"], "until") if "until" in args else None
    if low and high and low[1] != high[1]:
        raise OAIError("badArgument", "from and until must have the same granularity")
    if low and high and low[0] > high[0]:
        raise OAIError("badArgument", "from is later than until")
    try:
        end = high[0] + (timedelta(days=1) if high[1] == "day" else timedelta(seconds=1)) if high else None
    except OverflowError:  # until the last day of year 9999: no upper bound
        end = None
    return (low[0].isoformat() if low else None), (end.isoformat() if end else None)


def _format(prefix: str) -> str:
    if prefix not in FORMATS:
        raise OAIError("cannotDisseminateFormat", f"metadataPrefix {prefix!r} is not supported here (oai_dc, oai_datacite)")
    return prefix


# -- the response -----------------------------------------------------------------------------


def _envelope(base_url: str, now: datetime, verb: str | None, args: dict[str, str] | None) -> etree._Element:
    root = etree.Element(f"{{{OAI}}}OAI-PMH", nsmap={None: OAI, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{OAI} {OAI_SCHEMA}")
    etree.SubElement(root, f"{{{OAI}}}responseDate").text = _stamp(now)
    request = etree.SubElement(root, f"{{{OAI}}}request")
    request.text = base_url
    if verb is not None:
        request.set("verb", verb)
        for key, value in (args or {}).items():
            request.set(key, value)
    return root


def _el(parent, tag: str, text: str | None = None, **attrs: str):
    el = etree.SubElement(parent, f"{{{OAI}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def respond(ctx: Context, params: Sequence[tuple[str, str]], base_url: str, now: datetime | None = None) -> bytes:
    """The OAI-PMH response (XML bytes) to a request's arguments, errors included."""
    now = (now or harvest_time(ctx)).replace(microsecond=0)
    try:
        verb, args = _arguments(params)
    except OAIError as exc:
        root = _envelope(base_url, now, None, None)
        _el(root, "error", str(exc), code=exc.code)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    root = _envelope(base_url, now, verb, args)
    try:
        HANDLERS[verb](ctx, root, args, base_url, now)
    except OAIError as exc:
        for child in root[2:]:
            root.remove(child)
        if exc.code in ("badVerb", "badArgument"):  # the protocol: then the request element has no attributes
            root[1].attrib.clear()
        _el(root, "error", str(exc), code=exc.code)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _identify(ctx: Context, root, args, base_url: str, now: datetime) -> None:
    settings = ctx.settings
    with ctx.db.session() as s:
        earliest = s.scalar(select(func.min(RaidSearch.datestamp)))
    el = _el(root, "Identify")
    _el(el, "repositoryName", settings.oai_repository_name)
    _el(el, "baseURL", base_url)
    _el(el, "protocolVersion", "2.0")
    _el(el, "adminEmail", settings.oai_admin_email)
    _el(el, "earliestDatestamp", _stamp(earliest or now))
    _el(el, "deletedRecord", "persistent")
    _el(el, "granularity", "YYYY-MM-DDThh:mm:ssZ")


def _row_by_identifier(ctx: Context, identifier: str) -> RaidSearch:
    with ctx.db.session() as s:
        row = s.scalars(select(RaidSearch).where(RaidSearch.handle == _handle_of(identifier), RaidSearch.datestamp.is_not(None)).limit(1)).first()
    if row is None:
        raise OAIError("idDoesNotExist", f"no record {identifier!r} in this repository")
    return row


def _list_formats(ctx: Context, root, args, base_url: str, now: datetime) -> None:
    if "identifier" in args:
        _row_by_identifier(ctx, args["identifier"])
    el = _el(root, "ListMetadataFormats")
    for prefix, (schema, namespace) in FORMATS.items():
        fmt = _el(el, "metadataFormat")
        _el(fmt, "metadataPrefix", prefix)
        _el(fmt, "schema", schema)
        _el(fmt, "metadataNamespace", namespace)


def _list_sets(ctx: Context, root, args, base_url: str, now: datetime) -> None:
    if "resumptionToken" in args:
        raise OAIError("badResumptionToken", "ListSets answers in one response; this repository issued no token for it")
    with ctx.db.session() as s:
        agencies = s.execute(select(RegistrationAgency.id, RegistrationAgency.name).order_by(RegistrationAgency.id)).all()
    if not agencies:
        raise OAIError("noSetHierarchy", "this repository has no registration agencies yet, hence no sets")
    el = _el(root, "ListSets")
    for agency_id, name in agencies:
        one = _el(el, "set")
        _el(one, "setSpec", SET_PREFIX + agency_id)
        _el(one, "setName", name)


def _header(parent, row) -> None:
    header = _el(parent, "header", **({"status": "deleted"} if row.deleted else {}))
    _el(header, "identifier", oai_identifier(row.handle))
    _el(header, "datestamp", _stamp(row.datestamp))
    if row.agency_id:
        _el(header, "setSpec", SET_PREFIX + row.agency_id)


@dataclass
class _Row:
    raid_id: int
    handle: str
    datestamp: datetime
    agency_id: str | None
    deleted: bool


def _metadata(ctx: Context, rows: list[_Row], prefix: str, now: datetime) -> dict[int, etree._Element]:
    """The metadata of live records, computed now by the database from the allowlist; deleted ones are marked."""
    live = [r.raid_id for r in rows if not r.deleted]
    if not live:
        return {}
    with ctx.db.session() as s:
        sources = {r.id: r for r in s.execute(_source(now.date()).where(Raid.id.in_(live)))}
        names = {k: v.name for k, v in agencies_by_id(s, {r.agency_id for r in rows}).items()} if prefix == "oai_datacite" else {}
    out = {}
    for row in rows:
        source = sources.get(row.raid_id)
        if source is None or source.deleted_at is not None:
            row.deleted = True  # deleted since the index last looked: never its metadata
            continue
        record, _ = public_record(source)
        out[row.raid_id] = dc_xml(record) if prefix == "oai_dc" else datacite_xml(record, publisher=names.get(source.agency_id))
    return out


def _record(parent, row: _Row, metadata: dict[int, etree._Element]) -> None:
    record = _el(parent, "record")
    _header(record, row)
    if not row.deleted:
        _el(record, "metadata").append(metadata[row.raid_id])


def _get_record(ctx: Context, root, args, base_url: str, now: datetime) -> None:
    prefix = _format(args["metadataPrefix"])
    found = _row_by_identifier(ctx, args["identifier"])
    row = _Row(found.raid_id, found.handle, found.datestamp, found.agency_id, found.deleted)
    metadata = _metadata(ctx, [row], prefix, now)
    _record(_el(root, "GetRecord"), row, metadata)


def _list(ctx: Context, root, args, base_url: str, now: datetime, verb: str) -> None:
    page = ctx.settings.oai_page_size
    if "resumptionToken" in args:
        state = read_token(ctx, args["resumptionToken"], verb, now)
    else:
        low, high = _window(args)
        state = {"verb": verb, "prefix": _format(args["metadataPrefix"]), "set": args.get("set"), "from": low, "until": high, "after": None, "cursor": 0, "size": None}
    conds = [RaidSearch.datestamp.is_not(None), RaidSearch.handle.is_not(None)]
    if state["set"] is not None:
        agency = state["set"][len(SET_PREFIX) :] if state["set"].startswith(SET_PREFIX) else None
        conds.append(RaidSearch.agency_id == agency)
    if state["from"]:
        conds.append(RaidSearch.datestamp >= datetime.fromisoformat(state["from"]))
    if state["until"]:
        conds.append(RaidSearch.datestamp < datetime.fromisoformat(state["until"]))
    window = and_(*conds)
    cols = (RaidSearch.raid_id, RaidSearch.handle, RaidSearch.datestamp, RaidSearch.agency_id, RaidSearch.deleted)
    query = select(*cols).where(window)
    if state["after"]:
        stamp, last_id = state["after"]
        query = query.where(tuple_(RaidSearch.datestamp, RaidSearch.raid_id) > tuple_(literal(datetime.fromisoformat(stamp), UTCDateTime()), literal(last_id, RaidSearch.raid_id.type)))
    with ctx.db.session() as s:
        found = s.execute(query.order_by(RaidSearch.datestamp, RaidSearch.raid_id).limit(page + 1)).all()
        if state["size"] is None and found:
            state["size"] = len(found) if len(found) <= page else s.scalar(select(func.count()).select_from(RaidSearch).where(window))
    if not found:
        raise OAIError("noRecordsMatch", "no records match these arguments" if state["cursor"] == 0 else "the rest of this list no longer matches; harvest again from the last datestamp received")
    more = len(found) > page
    rows = [_Row(r.raid_id, r.handle, r.datestamp, r.agency_id, bool(r.deleted)) for r in found[:page]]
    el = _el(root, verb)
    if verb == "ListRecords":
        metadata = _metadata(ctx, rows, state["prefix"], now)
        for row in rows:
            _record(el, row, metadata)
    else:
        for row in rows:
            _header(el, row)
    cursor = state["cursor"]
    if more or "resumptionToken" in args:
        size = str(max(state["size"] or 0, cursor + len(rows)))
        if more:
            expires = now + timedelta(seconds=ctx.settings.oai_token_ttl)
            last = rows[-1]
            nxt = dict(state, after=[last.datestamp.isoformat(), last.raid_id], cursor=cursor + len(rows), expires=expires.timestamp())
            _el(el, "resumptionToken", make_token(ctx, nxt), expirationDate=_stamp(expires), completeListSize=size, cursor=str(cursor))
        else:
            _el(el, "resumptionToken", completeListSize=size, cursor=str(cursor))


HANDLERS = {
    "Identify": _identify,
    "ListMetadataFormats": _list_formats,
    "ListSets": _list_sets,
    "GetRecord": _get_record,
    "ListIdentifiers": lambda ctx, root, args, base_url, now: _list(ctx, root, args, base_url, now, "ListIdentifiers"),
    "ListRecords": lambda ctx, root, args, base_url, now: _list(ctx, root, args, base_url, now, "ListRecords"),
}
