"""OAI-PMH 2.0 at /oai, harvested by a real client (Sickle) over HTTP from a werkzeug server.

Every response is validated against the shipped OAI-PMH schema (with the oai_dc and
DataCite kernel-4 schemas for the metadata inside), offline.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests
from lxml import etree
from sickle import Sickle
from sqlalchemy import text
from werkzeug.serving import make_server

from exporter.db import utcnow
from exporter.discovery import index, oai, schemas
from exporter.raids import registry
from tests.conftest import free_port
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, future, handle, past, record, save
from web import create_app

NS = {"o": oai.OAI, "dc": "http://purl.org/dc/elements/1.1/", "d": "http://datacite.org/schema/kernel-4"}


@pytest.fixture
def server(ctx):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx.settings = ctx.settings.replace(public_url=base, oai_page_size=3)
    srv = make_server("127.0.0.1", port, create_app(ctx), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield ctx, base + "/oai"
    srv.shutdown()
    thread.join(10)


def get(url: str, method: str = "GET", **params) -> etree._Element:
    """One request: HTTP 200, text/xml, valid against the OAI-PMH schema (metadata included)."""
    resp = requests.request(method, url, params=params if method == "GET" else None, data=params if method == "POST" else None, timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/xml")
    problems = schemas.errors(schemas.oai_pmh(), resp.content)
    assert problems == [], problems
    return etree.fromstring(resp.content)


def error_code(root) -> str | None:
    err = root.find("o:error", NS)
    return err.get("code") if err is not None else None


SECRET = "zqxsecretzqx"


def populate(ctx) -> None:
    save(
        ctx,
        record(1, title="Open one"),
        record(2, title="Open two"),
        record(3, access="embargoed", expiry=future(), title=f"Closed {SECRET}", secret=SECRET),
        record(4, access="embargoed", expiry=past(), title="Expired embargo"),
        record(5, agency=OTHER_AGENCY, sp=OTHER_SP, title="Other agency"),
        record(6, title="Soon deleted"),
    )
    with ctx.db.session() as s:
        registry.delete_raid(s, handle(6))
    index.refresh(ctx)


def harvest(url: str, prefix: str = "oai_dc", **kw) -> list:
    return list(Sickle(url, max_retries=0).ListRecords(metadataPrefix=prefix, ignore_deleted=False, **kw))


def test_a_full_harvest_returns_every_public_raid_once_with_only_public_fields_of_closed_ones(server):
    ctx, url = server
    populate(ctx)
    records = harvest(url)
    ids = [r.header.identifier for r in records]
    assert sorted(ids) == sorted(handle(n) for n in range(1, 7)) and len(ids) == len(set(ids))
    by_id = {r.header.identifier: r for r in records}
    assert by_id[handle(6)].header.deleted and not getattr(by_id[handle(6)], "metadata", None)
    assert by_id[handle(1)].metadata["title"] == ["Open one"]
    assert by_id[handle(4)].metadata["title"] == ["Expired embargo"]
    closed = by_id[handle(3)]
    assert "title" not in closed.metadata and closed.metadata["identifier"] == [handle(3)]
    assert SECRET not in closed.raw
    assert {r.header.setSpecs[0] for r in records} == {"agency:038sjwq14", "agency:02stey378"}
    assert [r.header.identifier for r in harvest(url, set="agency:02stey378")] == [handle(5)]
    datacite = harvest(url, "oai_datacite")
    assert len(datacite) == 6 and all(SECRET not in r.raw for r in datacite)
    titles = {r.header.identifier: r.xml.findtext(".//d:title", namespaces=NS) for r in datacite if not r.header.deleted}
    assert titles[handle(1)] == "Open one" and titles[handle(3)] == "(:unal)"


def test_every_page_of_a_list_validates_and_carries_cursor_size_and_expiry(server):
    ctx, url = server
    populate(ctx)
    for verb in ("ListRecords", "ListIdentifiers"):
        for prefix in ("oai_dc", "oai_datacite"):
            root = get(url, verb=verb, metadataPrefix=prefix)
            seen = 0
            while True:
                body = root.find(f"o:{verb}", NS)
                seen += len(body.findall("o:record" if verb == "ListRecords" else "o:header", NS))
                token = body.find("o:resumptionToken", NS)
                assert token is not None and token.get("completeListSize") == "6"
                if not (token.text or "").strip():
                    break
                assert token.get("expirationDate") and int(token.get("cursor")) == seen - 3
                root = get(url, verb=verb, resumptionToken=token.text)
            assert seen == 6


def test_an_incremental_harvest_returns_exactly_the_changes_and_deletions(server):
    ctx, url = server
    populate(ctx)
    time.sleep(1.1)  # datestamps have second granularity and from is inclusive: a harvest
    first = get(url, verb="Identify").findtext("o:responseDate", namespaces=NS)  # within the same second sees them again
    time.sleep(1.1)
    with ctx.db.session() as s:
        registry.update_raid(s, handle(1), {"title": [{"text": "Open one, renamed"}]})
        s.execute(text("UPDATE raids SET metadata = :m WHERE handle = :h"), {"m": json.dumps(record(2, title="Open two by SQL")), "h": handle(2)})
        registry.delete_raid(s, handle(4))
    save(ctx, record(7, title="Brand new"), record(3, access="embargoed", expiry=future(), title="Closed, privately edited", secret=SECRET))
    index.refresh(ctx)
    changes = {r.header.identifier: r for r in harvest(url, **{"from": first})}
    assert set(changes) == {handle(1), handle(2), handle(4), handle(7)}  # not 3: nothing public about it changed
    assert changes[handle(4)].header.deleted
    assert changes[handle(1)].metadata["title"] == ["Open one, renamed"]
    assert changes[handle(2)].metadata["title"] == ["Open two by SQL"]
    until = harvest(url, until=first)
    assert {r.header.identifier for r in until} == {handle(3), handle(5), handle(6)}


def test_resumption_tokens_survive_concurrent_changes(server):
    ctx, url = server
    populate(ctx)
    root = get(url, verb="ListIdentifiers", metadataPrefix="oai_dc")
    first_page = [h.findtext("o:identifier", namespaces=NS) for h in root.iter(f"{{{oai.OAI}}}header")]
    token = root.find(".//o:resumptionToken", NS).text
    time.sleep(1.1)
    save(ctx, record(1, title="Changed during the harvest"), record(8, title="Added during the harvest"))
    with ctx.db.session() as s:
        later = [i for i in (handle(n) for n in range(1, 7)) if i not in first_page]
        registry.delete_raid(s, later[0]) if later[0] != handle(6) else None
    index.refresh(ctx)
    seen = list(first_page)
    while token:
        root = get(url, verb="ListIdentifiers", resumptionToken=token)
        seen += [h.findtext("o:identifier", namespaces=NS) for h in root.iter(f"{{{oai.OAI}}}header")]
        token = (root.find(".//o:resumptionToken", NS).text or "").strip()
    assert set(seen) >= {handle(n) for n in range(1, 7)} | {handle(8)}  # nothing skipped
    assert all(seen.count(i) == 1 for i in set(seen) - {handle(1), later[0]})


def test_identify_formats_sets_and_get_record(server):
    ctx, url = server
    populate(ctx)
    ident = get(url, verb="Identify").find("o:Identify", NS)
    assert ident.findtext("o:baseURL", namespaces=NS) == url
    assert ident.findtext("o:deletedRecord", namespaces=NS) == "persistent"
    assert ident.findtext("o:granularity", namespaces=NS) == "YYYY-MM-DDThh:mm:ssZ"
    formats = get(url, verb="ListMetadataFormats", identifier=handle(1)).findall(".//o:metadataPrefix", NS)
    assert [f.text for f in formats] == ["oai_dc", "oai_datacite"]
    sets = get(url, verb="ListSets").findall(".//o:setSpec", NS)
    assert sorted(s.text for s in sets) == ["agency:02stey378", "agency:038sjwq14"]
    rec = get(url, "POST", verb="GetRecord", identifier=handle(3), metadataPrefix="oai_datacite")
    assert SECRET not in etree.tostring(rec).decode()
    gone = get(url, verb="GetRecord", identifier=handle(6), metadataPrefix="oai_dc")
    assert gone.find(".//o:header", NS).get("status") == "deleted" and gone.find(".//o:metadata", NS) is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "badVerb"),
        ({"verb": "Harvest"}, "badVerb"),
        ({"verb": "ListRecords"}, "badArgument"),
        ({"verb": "Identify", "extra": "1"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2020-01-01T00:00:00"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2020-01-01", "until": "2021-01-01T00:00:00Z"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2021-01-01", "until": "2020-01-01"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "resumptionToken": "x"}, "badArgument"),
        ({"verb": "ListRecords", "resumptionToken": "garbage"}, "badResumptionToken"),
        ({"verb": "ListSets", "resumptionToken": "garbage"}, "badResumptionToken"),
        ({"verb": "ListRecords", "metadataPrefix": "marc21"}, "cannotDisseminateFormat"),
        ({"verb": "GetRecord", "identifier": handle(1), "metadataPrefix": "marc21"}, "cannotDisseminateFormat"),
        ({"verb": "GetRecord", "identifier": "https://nowhere/1", "metadataPrefix": "oai_dc"}, "idDoesNotExist"),
        ({"verb": "ListMetadataFormats", "identifier": "https://nowhere/1"}, "idDoesNotExist"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "agency:nobody"}, "noRecordsMatch"),
        ({"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "from": "2999-01-01"}, "noRecordsMatch"),
        # control characters XML cannot carry, in a name or a value the response would echo
        ({"verb": "Identify", "\x00": "1"}, "badArgument"),
        ({"verb": "ListIdentifiers", "metadataPrefix": "\x00"}, "badArgument"),
        ({"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "set": "agency:\x1b"}, "badArgument"),
        ({"verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": "a\x01b"}, "badArgument"),
    ],
)
def test_error_conditions_answer_200_with_the_code(server, params, code):
    ctx, url = server
    populate(ctx)
    root = get(url, **params)
    assert error_code(root) == code
    if code in ("badVerb", "badArgument"):
        assert root.find("o:request", NS).attrib == {}


@pytest.mark.parametrize("until", ["9999-12-31", "9999-12-31T23:59:59Z"])
def test_until_the_last_day_there_is_lists_everything(server, until):
    ctx, url = server
    populate(ctx)
    whole = get(url, verb="ListIdentifiers", metadataPrefix="oai_dc")
    bounded = get(url, verb="ListIdentifiers", metadataPrefix="oai_dc", until=until)
    assert error_code(bounded) is None
    assert [h.text for h in bounded.iterfind(".//o:identifier", NS)] == [h.text for h in whole.iterfind(".//o:identifier", NS)]


def test_repeated_arguments_tokens_that_were_altered_or_expired_and_no_sets(server):
    ctx, url = server
    root = get(url, verb="ListSets")
    assert error_code(root) == "noSetHierarchy"
    populate(ctx)
    resp = requests.get(url + "?verb=Identify&verb=Identify", timeout=10)
    assert error_code(etree.fromstring(resp.content)) == "badVerb"
    resp = requests.get(url + "?verb=ListRecords&metadataPrefix=oai_dc&metadataPrefix=oai_dc", timeout=10)
    assert error_code(etree.fromstring(resp.content)) == "badArgument"
    token = get(url, verb="ListRecords", metadataPrefix="oai_dc").find(".//o:resumptionToken", NS).text
    body, _, sig = token.partition(".")
    assert error_code(get(url, verb="ListRecords", resumptionToken=body[:-2] + "AA." + sig)) == "badResumptionToken"
    assert error_code(get(url, verb="ListIdentifiers", resumptionToken=token)) == "badResumptionToken"
    later = utcnow() + timedelta(seconds=ctx.settings.oai_token_ttl + 5)
    expired = etree.fromstring(oai.respond(ctx, [("verb", "ListRecords"), ("resumptionToken", token)], url, now=later))
    assert error_code(expired) == "badResumptionToken"
    assert error_code(get(url, verb="ListRecords", resumptionToken=token)) is None


def test_a_harvest_waits_for_a_stamped_batch_so_the_next_incremental_one_sees_it(ctx):
    """An index batch stamped but not yet committed when a harvest is answered: the harvest
    waits for it, so `from=<that responseDate>` never skips the batch."""
    populate(ctx)
    with ctx.db.session() as s:  # everything harvested long ago
        s.execute(text("UPDATE raid_search SET datestamp = '2020-01-01T00:00:00Z'"))
    base = "http://example.test/oai"
    first = etree.fromstring(oai.respond(ctx, [("verb", "ListIdentifiers"), ("metadataPrefix", "oai_dc")], base))
    since = first.find("o:responseDate", NS).text
    written, commit, answers = threading.Event(), threading.Event(), []

    def writer():  # what index._write does for one batch, held open until told to commit
        with ctx.db.session() as s:
            stamp = index.stamp_for_write(s)
            s.execute(text("UPDATE raid_search SET datestamp = :d WHERE handle = :h"), {"d": stamp, "h": handle(2)})
            written.set()
            commit.wait(30)

    def harvest():
        answers.append(etree.fromstring(oai.respond(ctx, [("verb", "ListIdentifiers"), ("metadataPrefix", "oai_dc"), ("from", since)], base)))

    w = threading.Thread(target=writer)
    w.start()
    assert written.wait(30)
    h = threading.Thread(target=harvest)
    h.start()
    h.join(1.0)  # without the lock the harvest would answer here, before the batch commits
    commit.set()
    w.join(30)
    h.join(30)
    [answer] = answers
    got = {e.text for e in answer.iterfind(".//o:header/o:identifier", NS)}
    assert got == {oai.oai_identifier(handle(2))}
