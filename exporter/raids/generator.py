"""Synthetic raids for demos, tests and benchmarks: realistic RAiD API records.

Mixed access types (open, embargoed with a future expiry, embargoed whose embargo has
passed), several titles and descriptions, contributors with ORCIDs, organisations with
RORs, subjects, related objects and spatial coverage.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from ..context import Context
from ..db import utcnow
from .models import Raid
from .public import ISO_639
from .record import ACCESS_URIS, COAR, ROR, parse
from .registry import ensure_agency, ensure_service_point

VOCAB = "https://vocabulary.raid.org/"
WORDS = (
    "genome sequencing assembly coastal erosion microbial soil carbon climate adaptation urban heat river basin "
    "language corpus indigenous archive seismic imaging protein folding machine learning reef monitoring "
    "public health cohort dementia wheat yield bushfire recovery ocean acidity quantum sensor bridge fatigue "
    "migration history astronomy survey pulsar timing wetland restoration koala habitat vaccine trial"
).split()
PLACES = [("2147714", "Sydney"), ("2158177", "Melbourne"), ("2174003", "Brisbane"), ("2063523", "Perth"), ("2078025", "Adelaide"), ("264371", "Athens")]
ROLES = ("conceptualization", "data-curation", "formal-analysis", "funding-acquisition", "investigation", "methodology", "project-administration", "software", "supervision", "writing-original-draft")
ORG_RORS = ("04qw24q55", "038sjwq14", "02stey378", "01ej9dk98", "03r8z3t63", "00rqy9422", "02bfwt286", "019wvm592")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _orcid(rng: random.Random) -> str:
    digits = "".join(rng.choice(string.digits) for _ in range(15))
    return f"https://orcid.org/{digits[:4]}-{digits[4:8]}-{digits[8:12]}-{digits[12:15]}{rng.choice(string.digits + 'X')}"


def _day(d: date) -> str:
    return d.isoformat()


def make_raid(
    rng: random.Random,
    handle: str,
    service_point: int,
    agency_ror: str,
    created: datetime,
    access: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """One RAiD API record; `access` is open, embargoed or expired (an embargo that has passed)."""
    today = today or datetime.now(UTC).date()
    access = access or rng.choices(("open", "embargoed", "expired"), weights=(6, 3, 1))[0]
    start = created.date() - timedelta(days=rng.randint(0, 400))
    titles = [{"text": _words(rng, 3, 9).capitalize(), "type": {"id": VOCAB + "title.type.schema/5", "schemaUri": VOCAB + "title.type.schema/376"}, "startDate": _day(start)}]
    for _ in range(rng.randint(1, 3)):
        titles.append({"text": _words(rng, 2, 8).capitalize(), "type": {"id": VOCAB + f"title.type.schema/{rng.choice((4, 156, 157))}", "schemaUri": VOCAB + "title.type.schema/376"}, "startDate": _day(start + timedelta(days=rng.randint(0, 200)))})
    record: dict[str, Any] = {
        "identifier": {
            "id": handle,
            "schemaUri": "https://raid.org/",
            "registrationAgency": {"id": agency_ror, "schemaUri": ROR},
            "owner": {"id": ROR + rng.choice(ORG_RORS), "schemaUri": ROR, "servicePoint": service_point},
            "raidAgencyUrl": handle,
            "version": 1,
        },
        "title": titles,
        "date": {"startDate": _day(start)} | ({"endDate": _day(start + timedelta(days=rng.randint(200, 2000)))} if rng.random() < 0.5 else {}),
        "description": [
            {"text": _words(rng, 12, 40).capitalize() + ".", "type": {"id": VOCAB + f"description.type.schema/{318 + i}", "schemaUri": VOCAB + "description.type.schema/320"}}
            for i in range(rng.randint(1, 2))
        ],
        "contributor": [
            {
                "id": _orcid(rng),
                "schemaUri": "https://orcid.org/",
                **({"leader": True, "contact": True} if i == 0 else {}),
                "position": [{"schemaUri": VOCAB + "contributor.position.schema/305", "id": VOCAB + f"contributor.position.schema/{rng.choice((307, 308, 309))}", "startDate": _day(start)}],
                "role": [{"schemaUri": "https://credit.niso.org/", "id": f"https://credit.niso.org/contributor-roles/{r}/"} for r in rng.sample(ROLES, rng.randint(1, 3))],
            }
            for i in range(rng.randint(1, 4))
        ],
        "organisation": [
            {"id": ROR + ror, "schemaUri": ROR, "role": [{"schemaUri": VOCAB + "organisation.role.schema/359", "id": VOCAB + f"organisation.role.schema/{rng.choice((182, 183, 184, 185, 186, 187, 188))}", "startDate": _day(start)}]}
            for ror in rng.sample(ORG_RORS, rng.randint(1, 3))
        ],
        "subject": [
            {"id": f"https://linked.data.gov.au/def/anzsrc-for/2020/{rng.randint(3000, 5299)}", "schemaUri": "https://linked.data.gov.au/def/anzsrc-for/2020/", "keyword": [{"text": _words(rng, 1, 3), "language": {"id": "eng", "schemaUri": ISO_639}}]}
            for _ in range(rng.randint(0, 2))
        ],
        "metadata": {"created": int(created.timestamp()), "updated": int(created.timestamp())},
    }
    if rng.random() < 0.6:
        record["relatedObject"] = [{"id": f"https://doi.org/10.{rng.randint(1000, 99999)}/{rng.randint(1, 10**6)}", "schemaUri": "https://doi.org/", "type": {"id": VOCAB + "relatedObject.type.schema/258", "schemaUri": VOCAB + "relatedObject.type.schema/329"}, "category": [{"id": VOCAB + "relatedObject.category.id/190", "schemaUri": VOCAB + "relatedObject.category.schemaUri/386"}]}]
    if rng.random() < 0.4:
        geo, place = rng.choice(PLACES)
        record["spatialCoverage"] = [{"id": f"https://www.geonames.org/{geo}/{place.lower()}.html", "schemaUri": "https://www.geonames.org/", "place": [{"text": place}]}]
    if rng.random() < 0.3:
        record["alternateIdentifier"] = [{"id": str(rng.randint(10**5, 10**7)), "type": "Other"}]
        record["alternateUrl"] = [{"url": f"https://example.org/projects/{rng.randint(1, 10**6)}"}]
    if access == "open":
        block = {"type": {"id": ACCESS_URIS["open"], "schemaUri": COAR}}
    else:
        expiry = today + timedelta(days=rng.randint(1, 540)) if access == "embargoed" else today - timedelta(days=rng.randint(1, 700))
        block = {"type": {"id": ACCESS_URIS["embargoed"], "schemaUri": COAR}, "statement": {"text": "This RAiD is embargoed", "language": {"id": "eng", "schemaUri": ISO_639}}, "embargoExpiry": _day(expiry)}
    record["access"] = block
    return record


def raid_rows(
    n: int,
    agency_ror: str,
    service_points: list[int],
    seed: int | None = None,
    handle_prefix: str = "https://raid.org.au/10378.1/",
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Column values for n new raids (what the bulk insert and the benchmark's COPY take)."""
    rng = random.Random(seed)
    now = now or utcnow()
    today = now.date()
    base = rng.getrandbits(40)
    for i in range(n):
        created = now - timedelta(seconds=rng.randint(86400, 5 * 365 * 86400))
        handle = f"{handle_prefix}{base:012d}{i:08d}"
        record = make_raid(rng, handle, service_points[i % len(service_points)], agency_ror, created, today=today)
        f = parse(record)
        yield {
            "handle": f.handle,
            "service_point_id": f.service_point_id,
            "record": record,
            "title": f.title,
            "access_type": f.access_type,
            "access_statement": f.access_statement,
            "access_statement_language": f.access_statement_language,
            "embargo_expiry": f.embargo_expiry,
            "created_at": f.created_at,
            "updated_at": now,
            "version": 1,
        }


def generate(
    ctx: Context,
    n: int,
    agency: str = "https://ror.org/038sjwq14",
    service_points: list[int] | None = None,
    seed: int | None = None,
    batch: int = 2000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Insert n synthetic raids (bulk insert, batches), creating the agency and service points."""
    service_points = service_points or [20000000]
    with ctx.db.session() as s:
        ag = ensure_agency(s, agency)
        for sp in service_points:
            ensure_service_point(s, sp, ag.ror)
    rows = raid_rows(n, ag.ror, service_points, seed=seed)
    done = 0
    while done < n:
        chunk = [row for _, row in zip(range(batch), rows, strict=False)]
        with ctx.db.session() as s:
            s.execute(insert(Raid), chunk)
        done += len(chunk)
        if on_progress:
            on_progress(done)
    return done
