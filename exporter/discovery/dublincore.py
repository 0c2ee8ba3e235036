"""A public raid record as unqualified Dublin Core (oai_dc), the format every OAI-PMH harvester reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

from ..raids.record import ACCESS_URIS
from .schemas import xml_safe

OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
OAI_DC_SCHEMA = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
DC = "http://purl.org/dc/elements/1.1/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _items(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _texts(items: list[dict], key: str = "text") -> list[str]:
    return [t for t in (xml_safe(i[key]).strip() for i in items if isinstance(i.get(key), str)) if t]


def dc_xml(record: dict) -> etree._Element:
    """The <oai_dc:dc> element of a public record (in full, or a closed raid's handle, date and rights)."""
    root = etree.Element(f"{{{OAI_DC}}}dc", nsmap={"oai_dc": OAI_DC, "dc": DC, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{OAI_DC} {OAI_DC_SCHEMA}")

    def add(tag: str, values: list[str]) -> None:
        for value in dict.fromkeys(values):
            etree.SubElement(root, f"{{{DC}}}{tag}").text = value

    ident = record.get("identifier") if isinstance(record.get("identifier"), dict) else {}
    add("title", _texts(_items(record.get("title"))))
    people = sorted(_items(record.get("contributor")), key=lambda p: not p.get("leader"))
    add("creator", _texts(people, "id"))
    subjects = _items(record.get("subject"))
    add("subject", [k for s in subjects for k in _texts(_items(s.get("keyword")))] + _texts(subjects, "id"))
    add("description", _texts(_items(record.get("description"))))
    add("contributor", _texts(_items(record.get("organisation")), "id"))
    span = record.get("date") if isinstance(record.get("date"), dict) else {}
    if isinstance(span.get("startDate"), str):
        add("date", [xml_safe(span["startDate"])])
    else:
        created = (record.get("metadata") or {}).get("created") if isinstance(record.get("metadata"), dict) else None
        if isinstance(created, (int, float)) and not isinstance(created, bool):
            add("date", [datetime.fromtimestamp(created, UTC).date().isoformat()])
    add("type", ["Project"])
    add("identifier", _texts([ident], "id"))
    add("relation", _texts(_items(record.get("relatedObject")), "id"))
    add("coverage", [p for c in _items(record.get("spatialCoverage")) for p in _texts(_items(c.get("place")))])
    access = record.get("access") if isinstance(record.get("access"), dict) else {}
    type_id = access.get("type", {}).get("id") if isinstance(access.get("type"), dict) else None
    rights = ["info:eu-repo/semantics/openAccess" if type_id == ACCESS_URIS["open"] else "info:eu-repo/semantics/embargoedAccess"]
    if isinstance(access.get("statement"), dict):
        rights += _texts([access["statement"]])
    if isinstance(access.get("embargoExpiry"), str):
        rights.append("info:eu-repo/date/embargoEnd/" + xml_safe(access["embargoExpiry"]))
    add("rights", rights)
    return root
