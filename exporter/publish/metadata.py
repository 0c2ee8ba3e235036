"""The Zenodo record of one public export: its InvenioRDM metadata, as a repository user expects it."""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any

from ..raids.crate import summary
from ..raids.latest import latest_url
from ..raids.record import ROR

KEYWORDS = ("RAiD", "research activity identifier", "persistent identifier", "research projects", "registry export")
LICENSE = "cc0-1.0"


def title(agency_name: str) -> str:
    """The same for every version of an agency's record: the version tells them apart."""
    return f"RAiD registry of {agency_name}: public export"


def description(agency_name: str, agency_ror: str, result: dict[str, Any], archive_name: str, settings) -> str:
    """What is in it, what was redacted and why, counts by access type, the watermark, and where the newest one is."""
    as_of = (result.get("as_of") or "")[:10]
    paragraphs = summary(agency_name, agency_ror, result["counts"], {"changes_up_to": result.get("cutoff")}, as_of, archive_name)
    paragraphs.append(
        f"Files: {archive_name} (the records, a README, a manifest and an RO-Crate), manifest.json (counts, time window, size and "
        "sha256 of every member and of the archive), SHA256SUMS (check a download with `sha256sum -c SHA256SUMS`) and "
        "ro-crate-metadata.json (RO-Crate 1.2: name, description, licence, and size, type and sha256 of each file)."
    )
    paragraphs.append(f"The newest export is always at {latest_url(settings, agency_ror.removeprefix(ROR))} (and latest.json beside it).")
    return "".join(f"<p>{escape(p)}</p>" for p in paragraphs)


def draft_body(agency_name: str, agency_ror: str, result: dict[str, Any], archive_name: str, version: str, previous_doi: str | None, settings, today: date) -> dict[str, Any]:
    """The body of POST /records and PUT /records/{id}/draft for this export's version."""
    related = [{"identifier": agency_ror, "scheme": "url", "relation_type": {"id": "iscompiledby"}}]
    if previous_doi:
        related.insert(0, {"identifier": previous_doi, "scheme": "doi", "relation_type": {"id": "isnewversionof"}, "resource_type": {"id": "dataset"}})
    return {
        "access": {"record": "public", "files": "public"},
        "files": {"enabled": True},
        "metadata": {
            "resource_type": {"id": "dataset"},
            "title": title(agency_name),
            "creators": [{"person_or_org": {"type": "organizational", "name": agency_name, "identifiers": [{"scheme": "ror", "identifier": agency_ror.removeprefix(ROR)}]}}],
            "description": description(agency_name, agency_ror, result, archive_name, settings),
            "rights": [{"id": LICENSE}],
            "version": version,
            "publication_date": today.isoformat(),
            "subjects": [{"subject": k} for k in KEYWORDS],
            "related_identifiers": related,
        },
    }
