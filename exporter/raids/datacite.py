"""A raid as DataCite Metadata Schema 4.x XML (kernel-4): what OAI-PMH's oai_datacite disseminates.

Works on any RAiD API record, and on the public record of a closed raid (handle, create
date and access block only): what a record lacks but DataCite requires (creators, title,
publisher) is given DataCite's standard values, `(:unal)` (withheld on purpose) for a
raid that is not published in full and `(:unav)` (not available) otherwise.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from ..discovery.schemas import xml_safe
from .record import ACCESS_URIS

NS = "http://datacite.org/schema/kernel-4"
SCHEMA_LOCATION = "http://schema.datacite.org/meta/kernel-4/metadata.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ORCID, ROR = "https://orcid.org/", "https://ror.org/"
_DOI = re.compile(r"^(?:[a-z]+://[^/]+/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_URL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://[^/]+/", re.IGNORECASE)
NAME_KEYS = ("name", "fullName")


def _items(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    if isinstance(value, str) and (text := xml_safe(value).strip()):
        return text
    return None


def _add(parent, tag: str, text: str | None = None, **attrs: str | None):
    el = etree.SubElement(parent, f"{{{NS}}}{tag}", {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def identifier_of(handle: str) -> tuple[str, str]:
    """(identifierType, value): a DOI when the handle names one (10.prefix/suffix), else a Handle."""
    if m := _DOI.match(handle):
        return "DOI", m.group(1)
    return "Handle", _URL_PREFIX.sub("", handle)


def _year(record: dict) -> str:
    created = (record.get("metadata") or {}).get("created") if isinstance(record.get("metadata"), dict) else None
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return str(datetime.fromtimestamp(created, UTC).year)
    start = _str((record.get("date") or {}).get("startDate")) if isinstance(record.get("date"), dict) else None
    return start[:4] if start and start[:4].isdigit() else str(datetime.now(UTC).year)


def _name(person: dict) -> tuple[str | None, str | None, str | None]:
    given, family = _str(person.get("givenName")), _str(person.get("familyName"))
    full = next((n for k in NAME_KEYS if (n := _str(person.get(k)))), None)
    if full is None and family:
        full = f"{family}, {given}" if given else family
    return full, given, family


def datacite_xml(record: dict, publisher: str | None = None) -> etree._Element:
    """The <resource> element of a RAiD record (kernel-4); `publisher` names the registration agency."""
    access = record.get("access") if isinstance(record.get("access"), dict) else {}
    type_id = _str((access.get("type") or {}).get("id")) if isinstance(access.get("type"), dict) else None
    in_full = "title" in record or type_id == ACCESS_URIS["open"]
    missing = "(:unav)" if in_full else "(:unal)"
    root = etree.Element(f"{{{NS}}}resource", nsmap={None: NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{NS} {SCHEMA_LOCATION}")
    ident = record.get("identifier") if isinstance(record.get("identifier"), dict) else {}
    handle = _str(ident.get("id")) or missing
    kind, value = identifier_of(handle)
    _add(root, "identifier", value, identifierType=kind)

    creators = _add(root, "creators")
    people = sorted(_items(record.get("contributor")), key=lambda p: not p.get("leader"))
    for person in people:
        full, given, family = _name(person)
        creator = _add(creators, "creator")
        _add(creator, "creatorName", full or missing, nameType="Personal")
        if given:
            _add(creator, "givenName", given)
        if family:
            _add(creator, "familyName", family)
        if orcid := _str(person.get("id")):
            _add(creator, "nameIdentifier", orcid, nameIdentifierScheme="ORCID", schemeURI=ORCID)
    if not people:
        _add(_add(creators, "creator"), "creatorName", missing)

    titles = _add(root, "titles")
    texts = [t for t in (_str(x.get("text")) for x in _items(record.get("title"))) if t]
    for n, text in enumerate(texts or [missing]):
        _add(titles, "title", text, titleType="AlternativeTitle" if n else None)

    agency = ident.get("registrationAgency") if isinstance(ident.get("registrationAgency"), dict) else {}
    agency_id = _str(agency.get("id"))
    _add(root, "publisher", _str(publisher) or agency_id or missing, publisherIdentifier=agency_id, publisherIdentifierScheme="ROR" if agency_id else None, schemeURI=ROR if agency_id else None)
    _add(root, "publicationYear", _year(record))
    _add(root, "resourceType", "Research activity (RAiD)", resourceTypeGeneral="Project")

    subjects = [(s, _str(s.get("id"))) for s in _items(record.get("subject"))]
    if subjects:
        el = _add(root, "subjects")
        for subject, uri in subjects:
            keywords = [k for k in (_str(x.get("text")) for x in _items(subject.get("keyword"))) if k]
            for keyword in keywords or [uri or missing]:
                _add(el, "subject", keyword, valueURI=uri, schemeURI=_str(subject.get("schemaUri")))

    orgs = [o for o in (_str(x.get("id")) for x in _items(record.get("organisation"))) if o]
    if orgs:
        el = _add(root, "contributors")
        for org in orgs:
            contributor = _add(el, "contributor", contributorType="ResearchGroup")
            _add(contributor, "contributorName", missing, nameType="Organizational")
            _add(contributor, "nameIdentifier", org, nameIdentifierScheme="ROR", schemeURI=ROR)

    dates = _add(root, "dates")
    created = (record.get("metadata") or {}).get("created") if isinstance(record.get("metadata"), dict) else None
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        _add(dates, "date", datetime.fromtimestamp(created, UTC).date().isoformat(), dateType="Created")
    span = record.get("date") if isinstance(record.get("date"), dict) else {}
    start, end = _str(span.get("startDate")), _str(span.get("endDate"))
    if start:
        _add(dates, "date", f"{start}/{end}" if end else start, dateType="Coverage")
    if expiry := _str(access.get("embargoExpiry")):
        _add(dates, "date", expiry, dateType="Available")
    if not len(dates):
        root.remove(dates)

    alternates = [a for a in (_str(x.get("id")) for x in _items(record.get("alternateIdentifier"))) if a]
    if alternates:
        el = _add(root, "alternateIdentifiers")
        for alt in alternates:
            _add(el, "alternateIdentifier", alt, alternateIdentifierType="Other")

    related = [(r, "DOI" if _DOI.match(r) else "URL") for r in (_str(x.get("id")) for x in _items(record.get("relatedObject"))) if r]
    related += [(u, "URL") for u in (_str(x.get("url")) for x in _items(record.get("alternateUrl"))) if u]
    if related:
        el = _add(root, "relatedIdentifiers")
        for value, scheme in related:
            _add(el, "relatedIdentifier", value, relatedIdentifierType=scheme, relationType="References")

    rights = _add(root, "rightsList")
    label = "Open access" if type_id == ACCESS_URIS["open"] else "Embargoed access"
    _add(rights, "rights", label, rightsURI=type_id)
    statement = access.get("statement") if isinstance(access.get("statement"), dict) else {}
    if text := _str(statement.get("text")):
        _add(rights, "rights", text)

    descriptions = [d for d in (_str(x.get("text")) for x in _items(record.get("description"))) if d]
    if descriptions:
        el = _add(root, "descriptions")
        for n, text in enumerate(descriptions):
            _add(el, "description", text, descriptionType="Other" if n else "Abstract")

    places = [p for cov in _items(record.get("spatialCoverage")) for p in (_str(x.get("text")) for x in _items(cov.get("place"))) if p]
    if places:
        el = _add(root, "geoLocations")
        for place in places:
            _add(_add(el, "geoLocation"), "geoLocationPlace", place)
    return root


def to_datacite_xml(record: dict, publisher: str | None = None) -> bytes:
    """The raid's DataCite XML as a document (what `exporter sync --format xml` writes)."""
    return etree.tostring(datacite_xml(record, publisher), xml_declaration=True, encoding="UTF-8", pretty_print=True)
