"""A raid as DataCite Metadata Schema 4.x XML (kernel-4), so DataCite harvesters can read it.

The identifier is the raid's DOI when its handle is one, else the handle's name with
identifierType "Handle" (older RAiD handles such as 10378.1/1234567 are not DOIs). Works on the public record (full or redacted): a property the record lacks gets DataCite's
standard value for missing information, `:unal` (withheld on purpose) for an embargoed raid
and `:unav` otherwise, so the six mandatory properties (identifier, creators, titles,
publisher, publicationYear, resourceType) are always there. Reusable for OAI-PMH
(`oai_datacite`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

NS = "http://datacite.org/schema/kernel-4"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{NS} https://schema.datacite.org/meta/kernel-4.5/metadata.xsd"
RESOURCE_TYPE = "Research activity (RAiD)"
DOI = re.compile(r"(10\.\d+(?:\.\d+)*/\S+)$")
ROR = "https://ror.org/"
ORCID = "https://orcid.org/"
# RAiD's vocabulary names its types by URIs ending in a number; these are the primary ones.
PRIMARY_TITLE = "title.type.schema/5"

ET.register_namespace("", NS)
ET.register_namespace("xsi", XSI)


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag), {k: v for k, v in attrs.items() if v})
    if text is not None:
        el.text = text
    return el


def _list(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _identifier(handle: str) -> tuple[str, str]:
    """(identifierType, value): the DOI when the handle is one (https://raid.org/10.25.10.1234/abc12),
    else the handle's name (10378.1/1234567 of https://raid.org.au/10378.1/1234567) as a Handle."""
    bare = handle.split("://", 1)[-1]
    name = bare.split("/", 1)[1] if "/" in bare and "://" in handle else bare
    match = DOI.match(name)
    return ("DOI", match.group(1)) if match else ("Handle", name)


def _year(record: dict) -> str:
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    created = meta.get("created")
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return str(datetime.fromtimestamp(created, UTC).year)
    start = (record.get("date") or {}).get("startDate") if isinstance(record.get("date"), dict) else None
    if isinstance(start, str) and start[:4].isdigit():
        return start[:4]
    return str(datetime.now(UTC).year)


def _embargoed(record: dict) -> bool:
    access = record.get("access") if isinstance(record.get("access"), dict) else {}
    type_id = (access.get("type") or {}).get("id", "") if isinstance(access.get("type"), dict) else ""
    return not str(type_id).rstrip("/").endswith("c_abf2")


def _related(identifier: str) -> tuple[str, str]:
    """(relatedIdentifierType, value): a DOI (from a doi.org URL too) or a URL."""
    bare = re.sub(r"^https?://(dx\.)?doi\.org/", "", identifier)
    match = DOI.search(bare) if bare != identifier or identifier.startswith("10.") else None
    return ("DOI", match.group(1)) if match else ("URL", identifier)


def to_datacite(record: dict[str, Any], publisher: str | None = None) -> ET.Element:
    """The <resource> element of a public raid record; `publisher` (a ROR) stands in when the record names no agency."""
    ident = record.get("identifier") if isinstance(record.get("identifier"), dict) else {}
    handle = str(ident.get("id", ""))
    missing = ":unal" if _embargoed(record) else ":unav"
    root = ET.Element(_q("resource"), {f"{{{XSI}}}schemaLocation": SCHEMA_LOCATION})
    kind, value = _identifier(handle)
    _sub(root, "identifier", value, identifierType=kind)

    creators = _sub(root, "creators")
    people = [c for c in _list(record.get("contributor")) if _text(c.get("id"))]
    for person in people:
        creator = _sub(creators, "creator")
        _sub(creator, "creatorName", person["id"].strip(), nameType="Personal")
        if person["id"].startswith(ORCID):
            _sub(creator, "nameIdentifier", person["id"].strip(), nameIdentifierScheme="ORCID", schemeURI=ORCID)
    if not people:
        _sub(_sub(creators, "creator"), "creatorName", missing)

    titles = _sub(root, "titles")
    entries = [t for t in _list(record.get("title")) if _text(t.get("text"))]
    for t in entries:
        type_id = str((t.get("type") or {}).get("id", "")) if isinstance(t.get("type"), dict) else ""
        kind = None if not type_id or type_id.endswith(PRIMARY_TITLE) else "AlternativeTitle"
        lang = (t.get("language") or {}).get("id") if isinstance(t.get("language"), dict) else None
        el = _sub(titles, "title", t["text"].strip(), titleType=kind or "")
        if lang:
            el.set("{http://www.w3.org/XML/1998/namespace}lang", str(lang))
    if not entries:
        _sub(titles, "title", missing)

    agency = ident.get("registrationAgency") if isinstance(ident.get("registrationAgency"), dict) else {}
    ror = _text(agency.get("id")) or publisher
    if ror and not ror.startswith("http"):
        ror = ROR + ror
    _sub(root, "publisher", ror or missing, publisherIdentifier=ror or "", publisherIdentifierScheme="ROR" if ror else "", schemeURI=ROR if ror else "")
    _sub(root, "publicationYear", _year(record))
    _sub(root, "resourceType", RESOURCE_TYPE, resourceTypeGeneral="Other")

    keywords = [k["text"].strip() for s in _list(record.get("subject")) for k in _list(s.get("keyword")) if _text(k.get("text"))]
    subject_ids = [s["id"] for s in _list(record.get("subject")) if _text(s.get("id"))]
    if keywords or subject_ids:
        subjects = _sub(root, "subjects")
        for k in keywords:
            _sub(subjects, "subject", k)
        for sid in subject_ids:
            _sub(subjects, "subject", sid, valueURI=sid if sid.startswith("http") else "")

    contributors = [(c["id"].strip(), "ProjectLeader" if c.get("leader") else "ContactPerson" if c.get("contact") else "ProjectMember", "Personal") for c in people]
    contributors += [(o["id"].strip(), "HostingInstitution", "Organizational") for o in _list(record.get("organisation")) if _text(o.get("id"))]
    if contributors:
        box = _sub(root, "contributors")
        for ident_url, role, name_type in contributors:
            c = _sub(box, "contributor", contributorType=role)
            _sub(c, "contributorName", ident_url, nameType=name_type)
            scheme = "ORCID" if ident_url.startswith(ORCID) else "ROR" if ident_url.startswith(ROR) else ""
            if scheme:
                _sub(c, "nameIdentifier", ident_url, nameIdentifierScheme=scheme, schemeURI=ORCID if scheme == "ORCID" else ROR)

    dates = _sub(root, "dates")
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    for key, kind in (("created", "Created"), ("updated", "Updated")):
        value = meta.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _sub(dates, "date", datetime.fromtimestamp(value, UTC).date().isoformat(), dateType=kind)
    span = record.get("date") if isinstance(record.get("date"), dict) else {}
    start, end = _text(span.get("startDate")), _text(span.get("endDate"))
    if start:
        _sub(dates, "date", f"{start}/{end}" if end else start, dateType="Other", dateInformation="The research activity's dates")
    access = record.get("access") if isinstance(record.get("access"), dict) else {}
    if _text(access.get("embargoExpiry")):
        _sub(dates, "date", access["embargoExpiry"].strip(), dateType="Available")
    if not len(dates):
        root.remove(dates)

    alternates = _sub(root, "alternateIdentifiers")
    if handle:
        _sub(alternates, "alternateIdentifier", handle, alternateIdentifierType="URL")
    for alt in _list(record.get("alternateIdentifier")):
        if _text(alt.get("id")):
            _sub(alternates, "alternateIdentifier", alt["id"].strip(), alternateIdentifierType=str(alt.get("type") or "Other"))
    if not len(alternates):
        root.remove(alternates)

    related = [r["id"].strip() for r in _list(record.get("relatedObject")) if _text(r.get("id"))]
    related += [u["url"].strip() for u in _list(record.get("alternateUrl")) if _text(u.get("url"))]
    if related:
        box = _sub(root, "relatedIdentifiers")
        for rid in related:
            kind, value = _related(rid)
            _sub(box, "relatedIdentifier", value, relatedIdentifierType=kind, relationType="References")

    type_id = str((access.get("type") or {}).get("id", "")) if isinstance(access.get("type"), dict) else ""
    rights = _sub(root, "rightsList")
    _sub(rights, "rights", "open access" if not _embargoed(record) else "embargoed access", rightsURI=type_id)

    descriptions = [d for d in _list(record.get("description")) if _text(d.get("text"))]
    statement = access.get("statement") if isinstance(access.get("statement"), dict) else {}
    if descriptions or _text(statement.get("text")):
        box = _sub(root, "descriptions")
        for d in descriptions:
            type_id = str((d.get("type") or {}).get("id", "")) if isinstance(d.get("type"), dict) else ""
            _sub(box, "description", d["text"].strip(), descriptionType="Abstract" if not type_id or type_id.endswith("/318") else "Other")
        if _text(statement.get("text")):
            _sub(box, "description", statement["text"].strip(), descriptionType="Other")
    return root


def to_datacite_xml(record: dict[str, Any], publisher: str | None = None) -> bytes:
    """The raid as a DataCite XML document (UTF-8, with the XML declaration)."""
    root = to_datacite(record, publisher)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
