"""GET /api/v1/search: public (no token), the public view only, errors naming the parameter."""

from __future__ import annotations

import pytest

from exporter.discovery import index
from tests.api_support import make_api
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, future, handle, record, save


@pytest.fixture
def api(ctx):
    save(
        ctx,
        record(1, title="Coastal erosion in Sydney"),
        record(2, title="Coastal heat"),
        record(3, access="embargoed", expiry=future(), title="Secret coastal project", secret="hidden77"),
        record(5, agency=OTHER_AGENCY, sp=OTHER_SP, title="Reef coastal monitoring"),
    )
    index.refresh(ctx)
    return make_api(ctx)


def test_search_needs_no_token_and_shows_only_public_fields(api):
    r = api.get("/search?q=coastal", who=None)
    assert r.status_code == 200, r.json
    assert sorted(h["handle"] for h in r.json["hits"]) == [handle(1), handle(2), handle(5)]
    assert r.json["total"] == 3 and r.json["totalExact"] is True
    assert api.get("/search?q=hidden77", who=None).json["hits"] == []  # a closed raid's private words match nothing
    [closed] = api.get("/search", query_string={"q": handle(3)}, who=None).json["hits"]
    assert (closed["title"], closed["publicInFull"], closed["accessType"]) == (None, False, "embargoed")


def test_filters_facets_and_paging(api):
    one = api.get("/search?q=coastal&agency=038sjwq14&perPage=1&page=2&sort=date", who=None).json
    assert one["total"] == 2 and len(one["hits"]) == 1 and one["perPage"] == 1
    facets = api.get("/search?q=coastal", who=None).json["facets"]
    assert {f["value"]: f["count"] for f in facets["accessType"]} == {"open": 3}


@pytest.mark.parametrize(
    "query, field",
    [("q=" + "x" * 501, "q"), ("from=2020-13-01", "from"), ("accessType=secret", "accessType"), ("perPage=500", "perPage"), ("sort=random", "sort"), ("colour=blue", "colour")],
)
def test_bad_parameters_are_400s_naming_them(api, query, field):
    r = api.get(f"/search?{query}", who=None)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field, r.json


HOSTILE = [
    "'", "\\", "a'b", "x' | !y", "'; DROP TABLE raids; --", "coastal) OR (1=1", '"', '""', '"unterminated', '-""', "-", "- -",
    "OR", "a OR", "a OR OR b", "NEAR(a b)", "a*", "^a", "title:coastal", "coastal_erosion", "\ue000", "x" * 101,
    "ünïcödé", "日本語", "🙂", "ß", "İ", "½", "\u202e", "a\x00b", "NOT a", "AND AND",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_query_strings_are_answered_or_refused_never_a_5xx(api, q):
    """tsquery and FTS5 syntax, quotes, SQL, control and private-use characters, unicode."""
    for extra in ({}, {"sort": "date", "agency": "'"}, {"page": 999_999_999}):
        r = api.get("/search", query_string={"q": q, **extra}, who=None)
        assert r.status_code in (200, 400), (q, r.status_code, r.get_data(as_text=True)[:200])
        if r.status_code == 400:
            assert r.json["field"] in ("q", "agency", "page"), r.json
        else:
            assert all(h["title"] != "Secret coastal project" for h in r.json["hits"])
