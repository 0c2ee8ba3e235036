"""How an export describes itself: an RO-Crate 1.2 metadata file and a summary in plain words.

The same RO-Crate shape goes twice into every export: inside the archive, describing the
archive's members, and beside it in the export folder (`ro-crate-metadata.json`),
describing the archive, its manifest and `SHA256SUMS`. Each file carries its size, media
type and sha256. The summary (what is in it, what was redacted and why, the counts, the
watermark) is the crate's description and, for a public export, the Zenodo record's.
Only public facts are used: the agency, counts and the export's time window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..storage.base import guess_type

RO_CRATE = "https://w3id.org/ro/crate/1.2"
CONTEXT = [f"{RO_CRATE}/context", {"sha256": "https://w3id.org/ro/terms/workflow-run#sha256"}]
CRATE_NAME = "ro-crate-metadata.json"
CRATE_TYPE = "application/ld+json"
SUMS_NAME = "SHA256SUMS"
CC0 = {"@id": "https://creativecommons.org/publicdomain/zero/1.0/", "@type": "CreativeWork", "name": "CC0 1.0 Universal", "identifier": "CC0-1.0"}


@dataclass(frozen=True)
class Part:
    """One file a crate describes."""

    name: str
    size: int
    sha256: str
    encoding_format: str

    @classmethod
    def member(cls, entry: dict[str, Any]) -> Part:
        """An archive member as the manifest lists it (name, size, sha256)."""
        return cls(entry["name"], entry["size"], entry["sha256"], guess_type(entry["name"]))


@dataclass(frozen=True)
class About:
    """What every crate of one export says about it."""

    name: str
    description: str
    date_published: str
    owner_name: str
    owner_id: str | None = None  # the agency's ROR; a service point has none
    public: bool = True


def ro_crate(about: About, parts: Iterable[Part]) -> bytes:
    """The RO-Crate metadata document: the root Dataset and one File entity per part."""
    parts = list(parts)
    owner = {"@id": about.owner_id or "#owner", "@type": "Organization", "name": about.owner_name}
    root: dict[str, Any] = {
        "@id": "./",
        "@type": "Dataset",
        "name": about.name,
        "description": about.description,
        "datePublished": about.date_published,
        "creator": {"@id": owner["@id"]},
        "hasPart": [{"@id": p.name} for p in parts],
    }
    graph: list[dict[str, Any]] = [
        {"@id": CRATE_NAME, "@type": "CreativeWork", "conformsTo": {"@id": RO_CRATE}, "about": {"@id": "./"}},
        root,
        owner,
    ]
    if about.public:
        root["license"] = {"@id": CC0["@id"]}
        graph.append(CC0)
    graph += [{"@id": p.name, "@type": "File", "name": p.name, "contentSize": str(p.size), "encodingFormat": p.encoding_format, "sha256": p.sha256} for p in parts]
    return json.dumps({"@context": CONTEXT, "@graph": graph}, indent=2, ensure_ascii=False).encode() + b"\n"


def sha256sums(parts: Iterable[Part]) -> bytes:
    """`sha256sum -c` input for the parts, one `<sha256>  <name>` line each."""
    return "".join(f"{p.sha256}  {p.name}\n" for p in parts).encode()


def summary(owner_name: str, owner_id: str | None, counts: dict[str, Any], window: dict[str, str | None], as_of_date: str, archive_name: str) -> list[str]:
    """Paragraphs saying what a public export holds, what was redacted and why, its counts and watermark."""
    by_type = ", ".join(f"{n} {t}" for t, n in counts.get("by_access_type", {}).items()) or "none"
    who = f"{owner_name} ({owner_id})" if owner_id else owner_name
    return [
        f"Public export of the RAiD (research activity identifier) registry of {who}: "
        f"{counts['records']} raids in {archive_name}, one RAiD API record a line in raids.jsonl, with a README, a manifest and this RO-Crate.",
        f"What was redacted and why: open raids, and embargoed raids whose embargo ended before {as_of_date}, appear in full ({counts['in_full']}). "
        f"The other {counts['redacted']} are closed or still under embargo: only their handle, create date and access block (type, statement, "
        "embargo expiry) are published, because the rest of such a record is not public until its embargo ends.",
        f"Counts by access type: {by_type}.",
        f"Watermark: every change recorded up to {window.get('changes_up_to')} (UTC) is included; later changes go into the next export.",
    ]
