"""No field of a closed raid, other than the public ones, ever reaches a public artifact.

Hypothesis makes random raids whose every private value carries a token unique to that
raid, including fields the exporter has never heard of (at the top level, inside the
identifier and inside the access block). A public export is run and every member of the
archive, the manifest, the sitemaps and the HTML index are searched for the tokens of the
raids that must stay closed, and so is every object of the agency's dump (parts, manifests,
snapshot, LATEST.json).
"""

from __future__ import annotations

import gzip
import string
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.raids.registry import save_raid
from tests.conftest import _truncate
from tests.dumps_helpers import publish
from tests.raids_helpers import AGENCY, COAR, jsonl, public_objects, run_export, today

ACCESS = {
    "open": (COAR + "c_abf2/", None),
    "embargoed-future": (COAR + "c_f1cf/", 1),
    "embargoed-today": (COAR + "c_f1cf/", 0),  # expires today: still closed today
    "embargoed-past": (COAR + "c_f1cf/", -1),
    "embargoed-no-expiry": ("c_f1cf", None),
    "closed-legacy": ("https://github.com/au-research/raid-metadata/blob/main/scheme/access/type/v1/closed.json", 3),
}
PUBLIC_IN_FULL = {"open", "embargoed-past"}
noise = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)  # NUL is refused on import
keys = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8).filter(lambda k: k not in {"id", "type", "statement", "embargoExpiry", "schemaUri"})


@st.composite
def raid_specs(draw):
    specs = []
    for i in range(draw(st.integers(1, 6))):
        specs.append(
            {
                "access": draw(st.sampled_from(sorted(ACCESS))),
                "token": f"TOK{i}Z{draw(st.integers(10**6, 10**9))}Q",
                "noise": draw(noise),
                "statement": draw(st.none() | noise),
                "extra": draw(keys),
                "days": draw(st.integers(1, 800)),
            }
        )
    return specs


def build(i: int, spec: dict) -> dict:
    t, n = spec["token"], spec["noise"]
    type_id, offset = ACCESS[spec["access"]]
    access: dict = {"type": {"id": type_id, "schemaUri": COAR}, spec["extra"]: f"{n}{t}-access"}
    if spec["statement"] is not None:
        access["statement"] = {"text": spec["statement"], "language": {"id": "eng", "note": f"{t}-lang"}}
    if offset is not None:
        access["embargoExpiry"] = (today() + timedelta(days=offset * spec["days"] if offset else 0)).isoformat()
    return {
        "identifier": {
            "id": f"https://raid.org.au/10378.1/leak{i}",
            "registrationAgency": {"id": AGENCY},
            "owner": {"id": f"https://ror.org/{t}-owner", "servicePoint": 20000000 + i % 2},
            "raidAgencyUrl": f"https://raid.org.au/10378.1/{t}-url",
            spec["extra"]: f"{t}-ident",
        },
        "title": [{"text": f"{n}{t}-title"}, {"text": f"<b>{t}-title2</b>"}],
        "description": [{"text": f"{n}{t}-description"}],
        "contributor": [{"id": f"https://orcid.org/{t}-orcid", "position": [{"id": f"{t}-position"}], "role": [{"id": f"{t}-role"}]}],
        "organisation": [{"id": f"https://ror.org/{t}-org", "role": [{"id": f"{t}-orgrole"}]}],
        "subject": [{"id": f"{t}-subject", "keyword": [{"text": f"{n}{t}-keyword"}]}],
        "relatedObject": [{"id": f"https://doi.org/{t}-doi"}],
        "alternateIdentifier": [{"id": f"{t}-altid", "type": "Other"}],
        "alternateUrl": [{"url": f"https://example.org/{t}-alturl"}],
        "spatialCoverage": [{"id": f"{t}-geo", "place": [{"text": f"{t}-place"}]}],
        "date": {"startDate": "2020-01-01", "note": f"{t}-date"},
        "access": access,
        "metadata": {"created": 1_600_000_000 + i, "note": f"{t}-metadata"},
        spec["extra"]: {"nested": f"{n}{t}-extra"},
    }


ALLOWED_ACCESS = {"type", "statement", "embargoExpiry"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(specs=raid_specs())
def test_no_private_field_of_a_closed_raid_reaches_any_public_artifact(ctx, specs):
    _truncate(ctx.settings.database_url)
    ctx.settings = ctx.settings.replace(export_settle_seconds=0, export_sitemap_max_urls=2, export_page_size=2)
    with ctx.db.session() as s:
        for i, spec in enumerate(specs):
            save_raid(s, build(i, spec))
    ctx.storage.delete_prefix("dumps/")  # the database was emptied: so is the dump it publishes
    job = run_export(ctx, "export_public", {"agency": AGENCY})
    objects = public_objects(ctx, job)
    publish(ctx, "038sjwq14")
    for info in ctx.storage.list("dumps/"):
        data = ctx.storage.read_bytes(info.key)
        objects[f"dump:{info.key}"] = gzip.decompress(data) if info.key.endswith(".gz") else data
    assert {"archive:raids.jsonl", "archive:README.md", "archive:manifest.json", "manifest", "sitemap", "index", "sitemap-00001", "index-00001"} <= set(objects)
    text = {name: data.decode("utf-8") for name, data in objects.items()}
    for i, spec in enumerate(specs):
        for name, body in text.items():
            if spec["access"] in PUBLIC_IN_FULL:
                continue
            assert spec["token"] not in body, f"closed raid {i} ({spec['access']}) leaked into {name}"
        if spec["access"] in PUBLIC_IN_FULL:
            assert f"{spec['token']}-description" in text["archive:raids.jsonl"]
    records = {r["identifier"]["id"]: r for r in jsonl(objects["archive:raids.jsonl"])}
    assert len(records) == len(specs)
    for i, spec in enumerate(specs):
        rec = records[f"https://raid.org.au/10378.1/leak{i}"]
        if spec["access"] in PUBLIC_IN_FULL:
            continue
        assert set(rec) == {"identifier", "metadata", "access"}
        assert rec["identifier"] == {"id": f"https://raid.org.au/10378.1/leak{i}"} and rec["metadata"] == {"created": 1_600_000_000 + i}
        assert set(rec["access"]) <= ALLOWED_ACCESS and set(rec["access"]["type"]) == {"id", "schemaUri"}
        if spec["statement"] is not None:
            assert rec["access"]["statement"]["text"] == spec["statement"]
            assert set(rec["access"]["statement"]["language"]) == {"id", "schemaUri"}
