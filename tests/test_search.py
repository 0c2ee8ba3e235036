"""The public search index: what matches, filters, facets, paging, and how it stays current.

Every test runs on SQLite (FTS5) and PostgreSQL (tsvector + GIN) with the same queries and
the same expected answers: one query language on both.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, select, text

from exporter.db import UTCDateTime, utcnow
from exporter.discovery import index
from exporter.discovery.models import RaidSearch
from exporter.discovery.search import search
from exporter.errors import InvalidRequest
from exporter.raids import registry
from exporter.raids.generator import generate
from tests.raids_helpers import AGENCY, OTHER_AGENCY, OTHER_SP, SP, SP2, future, handle, past, record, save, today

AT = bindparam("t", type_=UTCDateTime())  # raw SQL, but the time in the column's own format


def found(ctx, q, **kw) -> list[str]:
    return sorted(h.handle for h in search(ctx, q, per_page=100, **kw).hits)


def with_fields(rec: dict, **fields) -> dict:
    rec.update(fields)
    return rec


@pytest.fixture
def registry_of_raids(ctx):
    save(
        ctx,
        with_fields(record(1, title="Coastal erosion in Sydney"), subject=[{"id": "https://linked.data.gov.au/def/anzsrc-for/2020/3709", "keyword": [{"text": "shoreline dynamics"}]}]),
        with_fields(record(2, title="Urban heat islands", sp=SP2), description=[{"text": "Erosion of café terraces by the coastal wind"}], date={"startDate": "2023-05-01"}),
        record(3, access="embargoed", expiry=future(), title="Secret coastal project", secret="hidden77"),
        record(4, access="embargoed", expiry=past(), title="Expired reef survey"),
        with_fields(record(5, agency=OTHER_AGENCY, sp=OTHER_SP, title="Reef coastal monitoring"), date={"startDate": "2019-02-03"}),
    )
    index.refresh(ctx)
    return ctx


def test_open_raids_match_on_titles_descriptions_people_organisations_and_subjects(registry_of_raids):
    ctx = registry_of_raids
    assert found(ctx, "coastal") == [handle(1), handle(2), handle(5)]
    assert found(ctx, "shoreline") == [handle(1)]  # a subject keyword
    assert found(ctx, "0000-0002-4368-8058") == [handle(1), handle(2), handle(4), handle(5)]  # an ORCID
    assert found(ctx, "https://orcid.org/0000-0002-4368-8058") == found(ctx, "0000-0002-4368-8058")
    assert found(ctx, "https://ror.org/org") == [handle(1), handle(2), handle(4), handle(5)]
    assert found(ctx, "CAFE") == [handle(2)]  # case and diacritics folded
    assert found(ctx, "reef") == [handle(4), handle(5)]  # an expired embargo is public in full


def test_a_closed_raid_matches_on_its_handle_only_and_shows_no_title(registry_of_raids):
    ctx = registry_of_raids
    assert found(ctx, "secret") == []
    assert found(ctx, "hidden77") == []
    results = search(ctx, handle(3))
    assert [(h.handle, h.title, h.summary, h.in_full) for h in results.hits] == [(handle(3), None, None, False)]


def test_the_query_language_phrases_or_and_exclusion(registry_of_raids):
    ctx = registry_of_raids
    assert found(ctx, '"coastal erosion"') == [handle(1)]
    assert found(ctx, '"erosion coastal"') == []
    assert found(ctx, "erosion coastal") == [handle(1), handle(2)]
    assert found(ctx, "sydney OR reef") == [handle(1), handle(4), handle(5)]
    assert found(ctx, "coastal sydney OR monitoring") == [handle(1), handle(5)]
    assert found(ctx, "coastal -reef") == [handle(1), handle(2)]
    assert found(ctx, 'coastal -"coastal erosion"') == [handle(2), handle(5)]
    assert found(ctx, "sydney reef") == []
    assert found(ctx, '"of raid 1" OR "raid 4"') == []  # phrases never span two fields (handle then title)


def test_filters_and_facets(registry_of_raids):
    ctx = registry_of_raids
    assert found(ctx, "coastal", agency=OTHER_AGENCY) == [handle(5)]
    assert found(ctx, "coastal", agency="038sjwq14") == [handle(1), handle(2)]
    assert found(ctx, "coastal", service_point=SP2) == [handle(2)]
    assert found(ctx, "", access_type="embargoed") == [handle(3), handle(4)]
    assert found(ctx, "", access_type="https://vocabularies.coar-repositories.org/access_rights/c_abf2/") == [handle(1), handle(2), handle(5)]
    assert found(ctx, "", start_from="2020-01-01") == [handle(1), handle(2), handle(4)]  # closed raids have no public start date
    assert found(ctx, "", start_from="2020-01-01", start_until="2021-01-01") == [handle(1), handle(4)]
    results = search(ctx, "coastal")
    assert results.total == 3 and results.total_exact
    facets = {name: {v.value: v.count for v in values} for name, values in results.facets.items()}
    assert facets == {"agency": {"038sjwq14": 2, "02stey378": 1}, "servicePoint": {str(SP): 1, str(SP2): 1, str(OTHER_SP): 1}, "accessType": {"open": 3}}
    assert {v.label for v in results.facets["accessType"]} == {"Open"}


def test_sorting_and_paging(registry_of_raids):
    ctx = registry_of_raids
    by_date = [h.handle for h in search(ctx, "", sort="date").hits]
    assert by_date[:2] == [handle(2), handle(4)] and by_date[-1] == handle(3)  # newest start first, closed last
    assert [h.handle for h in search(ctx, "coastal", sort="date").hits] == [handle(2), handle(1), handle(5)]
    pages = [search(ctx, "", page=p, per_page=2, sort="date") for p in (1, 2, 3)]
    assert [len(p.hits) for p in pages] == [2, 2, 1] and pages[0].pages == 3
    assert [h.handle for p in pages for h in p.hits] == by_date
    assert search(ctx, '"coastal erosion" OR coastal').hits[0].handle == handle(1)  # the title match with both words ranks first


def test_counting_stops_at_the_limit(ctx):
    ctx.settings = ctx.settings.replace(search_count_limit=3)
    generate(ctx, 8, seed=3)
    index.refresh(ctx)
    results = search(ctx, "", per_page=2)
    assert (results.total, results.total_exact, len(results.hits)) == (3, False, 2)
    with ctx.db.session() as s:
        word = s.scalar(select(RaidSearch.title).where(RaidSearch.in_full.is_(True)).limit(1)).split()[0]
    ranked = search(ctx, word, per_page=2)
    assert ranked.hits and ranked.total <= 3
    with pytest.raises(InvalidRequest) as err:
        search(ctx, "", page=3, per_page=2)
    assert err.value.field == "page"


def answer(ctx, q, **kw) -> tuple:
    r = search(ctx, q, per_page=100, **kw)
    return r.total, r.total_exact, [h.handle for h in r.hits], {name: {v.value: v.count for v in values} for name, values in r.facets.items()}


@pytest.fixture
def spread_and_clustered(ctx):
    """60 raids of one agency, then 20 of another (at the end of the table): words in half of them, in some, in the last ones only."""
    records = []
    for n in range(1, 81):
        words = ["coastal" if n % 2 else "inland", "erosion" if n % 3 else "uplift", "survey"] + (["reef"] if n > 60 else [])
        other = n > 60
        rec = with_fields(record(n, title=" ".join(words), agency=OTHER_AGENCY if other else AGENCY, sp=OTHER_SP if other else (SP if n % 4 else SP2)), date={"startDate": f"20{10 + n % 12}-0{1 + n % 9}-01"})
        records.append(rec)
    save(ctx, *records)
    index.refresh(ctx)
    if ctx.db.backend == "postgresql":  # the planner's estimates, which choose between the ways in (search._first_matches)
        with ctx.db.engine.connect() as conn:
            conn.execute(text("ANALYZE raid_search"))
            conn.commit()
    return ctx


SPREAD_QUERIES = [
    ("coastal", {}),
    ("coastal erosion", {}),
    ("erosion -coastal", {}),
    ('"coastal erosion"', {}),
    ("coastal OR reef", {"access_type": "open"}),
    ("coastal", {"agency": OTHER_AGENCY}),  # the agency's raids sit at the end of the table
    ("survey", {"service_point": SP2}),
    ("erosion", {"start_from": "2014-01-01", "start_until": "2017-12-31"}),
    ("reef", {}),  # only the last raids hold it
    ("reef -uplift", {"agency": OTHER_AGENCY}),
    ("zyzzyva", {}),
]


@pytest.mark.parametrize("sort", ["relevance", "date"])
def test_every_way_into_the_index_finds_the_same_matches(spread_and_clustered, monkeypatch, sort):
    """First pages probed (all of them), an index of a filter walked, the GIN index alone: the same answers."""
    ctx = spread_and_clustered
    from exporter.discovery import search as search_module

    answers = {}
    for probe in (0, search_module.PROBE_ROWS_PER_MATCH, 10**9):  # 0: never probe or walk; 10**9: probe the whole table, walk for the rest
        monkeypatch.setattr(search_module, "PROBE_ROWS_PER_MATCH", probe)
        answers[probe] = [answer(ctx, q, sort=sort, **kw) for q, kw in SPREAD_QUERIES]
    assert answers[0] == answers[search_module.PROBE_ROWS_PER_MATCH] == answers[10**9]
    totals = [a[0] for a in answers[0]]
    assert totals == [40, 27, 27, 27, 50, 10, 15, 21, 20, 14, 0]  # a sanity check of the fixture: every query matches what it should
    assert all(a[1] for a in answers[0])


def test_a_capped_search_counts_ranks_and_facets_the_same_matches(spread_and_clustered, monkeypatch):
    ctx = spread_and_clustered
    from exporter.discovery import search as search_module

    everything = {q + repr(kw): set(answer(ctx, q, **kw)[2]) for q, kw in SPREAD_QUERIES}
    ctx.settings = ctx.settings.replace(search_count_limit=5)
    for probe in (0, search_module.PROBE_ROWS_PER_MATCH, 10**9):
        monkeypatch.setattr(search_module, "PROBE_ROWS_PER_MATCH", probe)
        for q, kw in SPREAD_QUERIES:
            total, exact, hits, facets = answer(ctx, q, **kw)
            matching = everything[q + repr(kw)]
            assert (total, exact) == ((5, False) if len(matching) > 5 else (len(matching), True)), (q, kw, probe)
            assert len(hits) == total and set(hits) <= matching, (q, kw, probe)  # the counted matches are the ranked ones
            assert all(sum(values.values()) == total for values in facets.values()), (q, kw, probe)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"q": "a OR"}, "q"),
        ({"q": "-only"}, "q"),
        ({"q": "x" * 501}, "q"),
        ({"agency": "not a ror!"}, "agency"),
        ({"access_type": "secret"}, "accessType"),
        ({"start_from": "2020-13-01"}, "from"),
        ({"start_from": "2021-01-01", "start_until": "2020-01-01"}, "from"),
        ({"per_page": 0}, "perPage"),
        ({"page": "x"}, "page"),
        ({"sort": "title"}, "sort"),
        ({"service_point": -1}, "servicePoint"),
    ],
)
def test_bad_queries_and_filters_say_which_field(ctx, kwargs, field):
    with pytest.raises(InvalidRequest) as err:
        search(ctx, **kwargs)
    assert err.value.field == field


# -- staying current ---------------------------------------------------------------------


def test_orm_bulk_and_raw_sql_changes_reach_the_index(ctx):
    save(ctx, record(1, title="First version"))
    index.refresh(ctx)
    with ctx.db.session() as s:
        registry.update_raid(s, handle(1), {"title": [{"text": "Second version"}]})
    generate(ctx, 3, seed=9)  # bulk insert
    with ctx.db.session() as s:  # raw SQL that forgets updated_at: the raids trigger moves it
        s.execute(text("UPDATE raids SET title = 'x' WHERE handle = :h"), {"h": handle(1)})
    index.refresh(ctx)
    assert found(ctx, "second") == [handle(1)] and found(ctx, "first") == []
    with ctx.db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM raid_search WHERE deleted = :f AND withdrawn = :f"), {"f": False}) == 4


def test_a_raid_made_closed_stops_matching_before_any_refresh(ctx):
    save(ctx, record(1, title="Glacier melt"))
    index.refresh(ctx)
    assert found(ctx, "glacier") == [handle(1)]
    save(ctx, record(1, title="Glacier melt", access="embargoed", expiry=future()))
    assert found(ctx, "glacier") == []  # the trigger withdrew it in the writing transaction
    index.refresh(ctx)
    assert found(ctx, "glacier") == [] and found(ctx, handle(1)) == [handle(1)]


def test_deleted_raids_vanish_and_stay_as_tombstones(ctx):
    save(ctx, record(1, title="Doomed project"), record(2, title="Doomed sibling"))
    index.refresh(ctx)
    with ctx.db.session() as s:
        registry.delete_raid(s, handle(1))
        s.execute(text("DELETE FROM raids WHERE handle = :h"), {"h": handle(2)})
    assert found(ctx, "doomed") == []
    index.refresh(ctx)
    assert found(ctx, "doomed") == []
    with ctx.db.session() as s:
        rows = {r.handle: r for r in s.scalars(select(RaidSearch))}
    assert rows[handle(1)].deleted and rows[handle(2)].deleted
    assert rows[handle(1)].title is None and not rows[handle(1)].withdrawn


def test_an_embargo_that_expires_makes_the_raid_searchable_without_a_write(ctx, monkeypatch):
    save(ctx, record(1, access="embargoed", expiry=today(), title="Tomorrow's news"))
    index.refresh(ctx)
    assert found(ctx, "news") == []
    with ctx.db.session() as s:
        before = s.scalar(select(RaidSearch.datestamp))
    tomorrow = utcnow() + timedelta(days=1)
    monkeypatch.setattr(index, "utcnow", lambda: tomorrow)
    index.refresh(ctx)  # the raid is still in the settle window: the scan itself sees the embargo over
    assert found(ctx, "news") == [handle(1)]
    monkeypatch.setattr(index, "utcnow", lambda: tomorrow + timedelta(days=1))
    save(ctx, record(2, access="embargoed", expiry=(tomorrow + timedelta(days=1)).date(), title="Later news"))
    with ctx.db.session() as s:  # long unchanged
        s.execute(text("UPDATE raids SET updated_at = :t WHERE handle = :h").bindparams(AT), {"t": utcnow() - timedelta(days=3), "h": handle(2)})
    index.refresh(ctx)
    monkeypatch.setattr(index, "utcnow", lambda: tomorrow + timedelta(days=2))
    result = index.refresh(ctx)
    assert result.get("reindexed") == 1, result
    assert found(ctx, "news") == [handle(1), handle(2)]
    with ctx.db.session() as s:
        assert s.scalar(select(RaidSearch.datestamp)) > before


def test_a_refresh_that_read_an_older_version_cannot_put_it_back(ctx):
    save(ctx, record(1, title="Volcano watch"))
    index.refresh(ctx)
    save(ctx, record(1, title="Volcano watch v2"))
    with ctx.db.engine.connect() as conn:  # a slow refresh reads the open version ...
        stale = conn.execute(index._source(today()).where(text("raids.handle = :h")), {"h": handle(1)}).all()
    save(ctx, record(1, title="Volcano watch v2", access="embargoed", expiry=future()))  # ... the raid is closed ...
    index._write(ctx, stale)  # ... and the slow refresh writes what it read
    assert found(ctx, "volcano") == []
    index.refresh(ctx)
    assert found(ctx, "volcano") == []


def test_unchanged_public_views_keep_their_datestamps(ctx):
    save(ctx, record(1, title="Stable"), record(2, access="embargoed", expiry=future(), secret="s1"))
    index.refresh(ctx)
    with ctx.db.session() as s:
        before = dict(s.execute(select(RaidSearch.handle, RaidSearch.datestamp)).all())
    save(ctx, record(2, access="embargoed", expiry=future(), secret="s2"))  # a private change only
    index.refresh(ctx)
    index.rebuild(ctx)
    with ctx.db.session() as s:
        after = dict(s.execute(select(RaidSearch.handle, RaidSearch.datestamp)).all())
    assert after == before


def test_reconcile_finds_what_the_settle_window_missed(ctx):
    save(ctx, record(1, title="Late commit"))
    index.refresh(ctx)
    with ctx.db.session() as s:  # later scans went on while a transaction stamped long before them was still open
        s.execute(text("UPDATE search_state SET scanned_up_to = :t").bindparams(AT), {"t": utcnow() + timedelta(hours=1)})
    save(ctx, record(1, title="Very late commit"))
    index.refresh(ctx)
    assert found(ctx, "very") == []
    index.refresh(ctx, reconcile=True)
    assert found(ctx, "very") == [handle(1)]
    with ctx.db.session() as s:
        s.execute(text("DELETE FROM raids"))
    assert index.refresh(ctx, reconcile=True)["removed"] == 1


def test_one_refresh_at_a_time(ctx):
    with index._lease(ctx) as lease:
        assert lease is not None
        assert index.refresh(ctx) == {"skipped": "another refresh holds the lease"}
    assert index.refresh(ctx)["mode"] == "incremental"
