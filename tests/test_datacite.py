"""The DataCite kernel-4 mapping of a raid validates against the shipped schema, offline."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from lxml import etree

from exporter.discovery import schemas
from exporter.discovery.dublincore import dc_xml
from exporter.raids.datacite import NS, datacite_xml, identifier_of
from exporter.raids.generator import make_raid
from exporter.raids.public import redacted
from tests.raids_helpers import record


def test_generated_raids_validate_against_kernel_4():
    rng = random.Random(15)
    for i in range(150):
        rec = make_raid(rng, f"https://raid.org.au/10378.1/{i}", 20000000, "https://ror.org/038sjwq14", datetime(2024, 5, 1, tzinfo=UTC))
        el = datacite_xml(rec, publisher="Australian Research Data Commons")
        assert schemas.errors(schemas.datacite(), el) == [], i
        assert schemas.errors(schemas.datacite(), etree.tostring(el)) == []


def test_the_public_record_of_a_closed_raid_validates_and_says_withheld():
    rec = redacted("https://raid.org/10.82841/86bb1c6b", datetime(2023, 1, 2, tzinfo=UTC), "embargoed", "Embargoed \x01 for now", "eng", datetime(2027, 1, 1).date())
    el = datacite_xml(rec)
    assert schemas.errors(schemas.datacite(), el) == []
    assert el.findtext(f"{{{NS}}}identifier") == "10.82841/86bb1c6b" and el.find(f"{{{NS}}}identifier").get("identifierType") == "DOI"
    assert el.findtext(f".//{{{NS}}}title") == "(:unal)" and el.findtext(f".//{{{NS}}}creatorName") == "(:unal)"
    assert el.findtext(f".//{{{NS}}}date[@dateType='Available']") == "2027-01-01"


def test_a_sparse_record_still_validates_and_names_people_when_it_can():
    rec = record(1, title="Only a title")
    rec["contributor"][0].update({"givenName": "Ada", "familyName": "Lovelace"})
    el = datacite_xml(rec)
    assert schemas.errors(schemas.datacite(), el) == []
    assert el.findtext(f".//{{{NS}}}creatorName") == "Lovelace, Ada"
    assert identifier_of("https://raid.org.au/10378.1/1") == ("Handle", "10378.1/1")
    assert dc_xml(rec).findtext("{http://purl.org/dc/elements/1.1/}title") == "Only a title"
