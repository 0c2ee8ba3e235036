"""Public search over the index: free text (exporter.discovery.query), filters, facets, paging.

Everything read here is in raid_search, which holds only public views: a raid that is not
published in full matches on its handle alone and shows no title. Rows a write withdrew
(and tombstones) never match.

Counting is bounded: a search counts at most SEARCH_COUNT_LIMIT matches (the total then
reads "more than N", facets count those N); with more matches than that, relevance ranks
those same N (the first the database finds, in storage order), so the cost of a query does
not grow with the number of raids it matches.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Text, column, desc, func, literal, literal_column, select, table, text, union_all
from sqlalchemy.dialects.postgresql import TSQUERY

from ..context import Context
from ..errors import InvalidRequest
from ..raids.record import access_type_of, ror_id
from ..raids.registry import agencies_by_id, service_points_by_id
from ..raids.sitemaps import landing_url
from .models import RaidSearch
from .query import Query, parse

SORTS = ("relevance", "date")
PROBE_ROWS_PER_MATCH = 16  # rows of the table's first pages read for each match wanted before an index is used
MAX_PER_PAGE = 100
ACCESS_LABELS = {"open": "Open", "embargoed": "Embargoed"}

_FTS = table("raid_search_fts", column("rowid"))
_HIT_COLUMNS = (
    RaidSearch.raid_id,
    RaidSearch.handle,
    RaidSearch.title,
    RaidSearch.summary,
    RaidSearch.access_type,
    RaidSearch.in_full,
    RaidSearch.agency_id,
    RaidSearch.service_point_id,
    RaidSearch.start_date,
    RaidSearch.created,
    RaidSearch.embargo_expiry,
)


@dataclass(frozen=True)
class Hit:
    handle: str
    landing_url: str
    title: str | None  # None unless the raid is public in full
    summary: str | None
    access_type: str
    in_full: bool
    agency: str | None
    service_point: int | None
    start_date: date | None
    created: datetime | None
    embargo_expiry: date | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "landingUrl": self.landing_url,
            "title": self.title,
            "summary": self.summary,
            "accessType": self.access_type,
            "publicInFull": self.in_full,
            "agency": self.agency,
            "servicePoint": self.service_point,
            "startDate": self.start_date.isoformat() if self.start_date else None,
            "created": self.created.isoformat().replace("+00:00", "Z") if self.created else None,
            "embargoExpiry": self.embargo_expiry.isoformat() if self.embargo_expiry else None,
        }


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int


@dataclass
class SearchResults:
    q: str
    page: int
    per_page: int
    sort: str
    total: int
    total_exact: bool  # False: there are more than `total` matches
    hits: list[Hit] = field(default_factory=list)
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "page": self.page,
            "perPage": self.per_page,
            "sort": self.sort,
            "total": self.total,
            "totalExact": self.total_exact,
            "filters": self.filters,
            "hits": [h.to_dict() for h in self.hits],
            "facets": {name: [{"value": v.value, "label": v.label, "count": v.count} for v in values] for name, values in self.facets.items()},
        }


def _date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest(f"{name} must be a date (YYYY-MM-DD), got {value!r}", field=name) from None


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}", field=name) from None
    if not lo <= number <= hi:
        raise InvalidRequest(f"{name} must be from {lo} to {hi}, got {number}", field=name)
    return number


def _listed() -> list:
    """The conditions every search has: live rows only (no tombstones, nothing a write withdrew)."""
    return [RaidSearch.deleted.is_(False), RaidSearch.withdrawn.is_(False), RaidSearch.datestamp.is_not(None)]


def _filters(agency, service_point, access_type, start_from, start_until) -> tuple[list, dict[str, Any]]:
    """SQL conditions for the filters, and the filters as given back (field names are the API's)."""
    conds = _listed()
    echo: dict[str, Any] = {}
    if agency not in (None, ""):
        echo["agency"] = ror_id(str(agency))
        conds.append(RaidSearch.agency_id == echo["agency"])
    if service_point not in (None, ""):
        echo["servicePoint"] = _int(service_point, "servicePoint", 1, 2**63 - 1)
        conds.append(RaidSearch.service_point_id == echo["servicePoint"])
    if access_type not in (None, ""):
        try:
            echo["accessType"] = access_type_of(str(access_type))
        except InvalidRequest as exc:
            raise InvalidRequest(str(exc).replace("access.type.id", "accessType"), field="accessType") from None
        conds.append(RaidSearch.access_type == echo["accessType"])
    low, high = _date(start_from, "from"), _date(start_until, "until")
    if low and high and low > high:
        raise InvalidRequest(f"from ({low}) is after until ({high})", field="from")
    if low:
        echo["from"] = low.isoformat()
        conds.append(RaidSearch.start_date >= low)
    if high:
        echo["until"] = high.isoformat()
        conds.append(RaidSearch.start_date <= high)
    return conds, echo


def _tsquery(literal_text: str):
    # Inline, not a parameter: a prepared statement's generic plan cannot see how common the
    # words are, and picks the GIN bitmap for a word in half the raids. The lexemes are
    # letters and digits only (text.tokens), so the literal needs no escaping beyond quotes.
    return literal_column("'" + literal_text.replace("'", "''") + "'::tsquery", TSQUERY)


def _matching(ctx: Context, query: Query, columns, conds, with_score: bool = False):
    """SELECT columns (+ a relevance score, higher is better) FROM the index WHERE the query matches."""
    if query.empty:
        return select(*columns, *([literal(0).label("score")] if with_score else [])).where(*conds)
    if ctx.db.backend == "postgresql":
        tsv = literal_column("raid_search.tsv")
        wanted, unwanted = query.tsquery_parts()
        match = [tsv.op("@@")(_tsquery(wanted))]
        if unwanted:  # a filter on the rows the wanted words found, not a second GIN scan
            match.append(~tsv.op("@@")(_tsquery(unwanted)))
        score = [func.ts_rank(tsv, _tsquery(query.tsquery())).label("score")] if with_score else []
        return select(*columns, *score).where(*match, *conds)
    fts = literal_column("raid_search_fts")
    score = [(-func.bm25(fts, 10.0, 1.0)).label("score")] if with_score else []
    joined = RaidSearch.__table__.join(_FTS, _FTS.c.rowid == RaidSearch.raid_id)
    return select(*columns, *score).select_from(joined).where(fts.op("MATCH")(literal(query.fts5(), Text)), *conds)


def _estimates(session, *stmts) -> list[float]:
    """The planner's estimates of the rows each statement returns, in one round trip (EXPLAIN of their UNION ALL)."""
    compiled = (union_all(*stmts) if len(stmts) > 1 else stmts[0]).compile(dialect=session.get_bind().dialect)
    plan = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params).scalar()[0]["Plan"]
    return [float(p["Plan Rows"]) for p in (plan["Plans"] if len(stmts) > 1 else [plan])]


def _first_matches(session, ctx: Context, query: Query, columns, conds, limit: int, with_score: bool, indexed_filter: bool, table_size: tuple, restore: bool) -> list:
    """The first `limit` matches the database finds.

    On PostgreSQL the GIN index is the way in for rare words, but it hands over every raid
    holding a word before the first is read: half a million for a common word in a million
    raids, tens of milliseconds. So, by the planner's estimates (EXPLAIN):

    - when the matches are common enough to expect `limit` of them in PROBE_ROWS_PER_MATCH
      rows per match wanted, the table's first pages (that many rows) are read first and the
      words tested row by row, in storage order; only when those pages hold too few (the
      matches sit elsewhere) is the rest of the table looked at, as below;
    - when the words alone are that common but a filter with an index of its own (agency,
      service point, start dates) makes the matches rare, that index is walked and the words
      tested row by row: no GIN scan;
    - otherwise (rare words) the GIN index finds them.

    `restore`: put the planner settings back for the statements that follow.
    """
    stmt = _matching(ctx, query, columns, conds, with_score=with_score)
    if ctx.db.backend != "postgresql" or query.empty:
        return session.execute(stmt.limit(limit)).all()
    tuples, pages = table_size
    if tuples <= 0 or pages <= 0:  # never analysed: no estimates to go by
        return session.execute(stmt.limit(limit)).all()
    probe = PROBE_ROWS_PER_MATCH * limit
    keys = (RaidSearch.raid_id,)
    estimates = _estimates(session, _matching(ctx, query, keys, conds), *([_matching(ctx, query, keys, _listed())] if indexed_filter else []))
    common = [e * probe >= limit * tuples for e in estimates]  # `limit` matches expected within `probe` rows
    found: list = []
    rest = stmt
    if common[0]:
        ctid, bound = literal_column("raid_search.ctid"), literal_column(f"'({min(math.ceil(probe * pages / tuples), 2**32 - 1)},0)'::tid")
        found = session.execute(stmt.where(ctid < bound).limit(limit)).all()
        rest = stmt.where(ctid >= bound)
    if len(found) < limit:
        walk = indexed_filter and common[-1]
        off = (["enable_tidscan"] if rest is not stmt else []) + (["enable_bitmapscan"] if walk else [])  # the rest through an index: not the pages after the probed ones (a LIMIT over them bets that matches are spread evenly)
        _set(session, off, "off")
        found += session.execute(rest.limit(limit - len(found))).all()
        if restore:
            _set(session, off, "on")
    return found


def _set(session, settings: list[str], value: str) -> None:
    """Planner settings for the rest of this transaction, in one round trip."""
    if settings:
        session.execute(text("SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name in settings)))


def _page_by_date(session, ctx: Context, query: Query, conds, limit: int, offset: int, undated: bool) -> list:
    """Newest start date first, then the raids without a public start date (newest first).

    Each half walks its own index; the second is read only when the page reaches into it and
    the count saw such matches (`undated`), since proving there are none means reading all.
    """
    order = (desc(RaidSearch.start_date), desc(RaidSearch.raid_id))
    rows = session.execute(_matching(ctx, query, _HIT_COLUMNS, [*conds, RaidSearch.start_date.is_not(None)]).order_by(*order).limit(limit).offset(offset)).all()
    if len(rows) == limit or not undated:
        return rows
    if rows:
        skip = 0
    else:
        dated = _matching(ctx, query, (RaidSearch.raid_id,), [*conds, RaidSearch.start_date.is_not(None)]).limit(offset).subquery()
        skip = offset - session.scalar(select(func.count()).select_from(dated))
    rest = _matching(ctx, query, _HIT_COLUMNS, [*conds, RaidSearch.start_date.is_(None)]).order_by(desc(RaidSearch.raid_id)).limit(limit - len(rows)).offset(skip)
    return rows + session.execute(rest).all()


def _page_by_relevance(session, found: list, conds, limit: int, offset: int) -> list:
    """Best score first (then the newest raid id) among the counted matches; their columns read by id.

    The conditions are applied again, so a raid withdrawn since the matches were read is left
    out rather than shown.
    """
    best = [r[0] for r in sorted(found, key=itemgetter(5, 0), reverse=True)[offset : offset + limit]]  # (score, raid_id) of _first_matches' rows
    if not best:
        return []
    rows = {r.raid_id: r for r in session.execute(select(*_HIT_COLUMNS).where(RaidSearch.raid_id.in_(best), *conds))}
    return [rows[i] for i in best if i in rows]


def search(
    ctx: Context,
    q: str | None = None,
    agency: str | None = None,
    access_type: str | None = None,
    start_from: date | str | None = None,
    start_until: date | str | None = None,
    page: int | str = 1,
    per_page: int | str = 20,
    sort: str = "relevance",
    service_point: int | str | None = None,
) -> SearchResults:
    """Search the public index. Raises InvalidRequest(message, field=q|agency|servicePoint|accessType|from|until|page|perPage|sort)."""
    query = parse(q)
    cap = ctx.settings.search_count_limit
    per_page = _int(per_page, "perPage", 1, MAX_PER_PAGE)
    page = _int(page, "page", 1, 10**9)
    if (page - 1) * per_page >= cap:
        raise InvalidRequest(f"only the first {cap:,} results can be paged through; narrow the search", field="page")
    sort = sort or "relevance"
    if sort not in SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(SORTS)}", field="sort")
    conds, echo = _filters(agency, service_point, access_type, start_from, start_until)
    with ctx.db.session() as s:
        table_size = (0, 0)
        if ctx.db.backend == "postgresql":  # in one round trip: the table's size (for _first_matches) and this transaction's settings
            table_size = s.execute(
                text(
                    "SELECT reltuples, relpages,"
                    " set_config('synchronize_seqscans', 'off', true),"  # every scan from the table's start: the same first matches on every page
                    " set_config('plan_cache_mode', 'force_custom_plan', true),"  # plans for these filters, also once psycopg prepares the statement
                    # words: in through an index or a bounded range of pages, never a table scan: a LIMIT over one bets that
                    # matches are spread evenly, and loses badly when a filter's raids sit together
                    " set_config('enable_seqscan', :seqscan, true)"
                    " FROM pg_class WHERE oid = 'raid_search'::regclass"
                ),
                {"seqscan": "on" if query.empty else "off"},
            ).one()[:2]
        # One pass finds the matches that are counted, faceted and ranked: the first cap the
        # database finds (in storage order), with the score only when the page is by relevance.
        by_date = sort == "date" or query.empty
        keys = (RaidSearch.raid_id, RaidSearch.agency_id, RaidSearch.service_point_id, RaidSearch.access_type, RaidSearch.start_date.is_(None).label("undated"))
        indexed_filter = any(k in echo for k in ("agency", "servicePoint", "from", "until"))
        found = _first_matches(s, ctx, query, keys, conds, cap + 1, not by_date, indexed_filter, table_size, restore=by_date)
        exact = len(found) <= cap
        found = found[:cap]  # the cap + 1st match only tells there are more
        groups = Counter(map(itemgetter(1, 2, 3, 4), found))  # (agency_id, service_point_id, access_type, undated)
        total = len(found)
        offset = (page - 1) * per_page
        if by_date:
            rows = _page_by_date(s, ctx, query, conds, per_page, offset, undated=not exact or any(key[3] for key in groups))
        else:
            rows = _page_by_relevance(s, found, conds, per_page, offset)
        facets = _facets(s, groups)
    template = ctx.settings.export_landing_url
    hits = [
        Hit(r.handle, landing_url(template, r.handle), r.title if r.in_full else None, r.summary if r.in_full else None, r.access_type, bool(r.in_full), r.agency_id, r.service_point_id, r.start_date, r.created, r.embargo_expiry)
        for r in rows
    ]
    return SearchResults(query.text, page, per_page, "date" if query.empty else sort, total, exact, hits, facets, echo)


def _facets(session, groups: Counter) -> dict[str, list[FacetValue]]:
    agencies: Counter = Counter()
    points: Counter = Counter()
    access: Counter = Counter()
    for (agency, point, access_type, _undated), n in groups.items():
        for counter, value in ((agencies, agency), (points, point), (access, access_type)):
            if value is not None and n:
                counter[value] += n
    names = agencies_by_id(session, agencies)
    sps = service_points_by_id(session, points)

    def values(counts: Counter, label) -> list[FacetValue]:
        return [FacetValue(str(v), label(v), n) for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]

    return {
        "agency": values(agencies, lambda a: names[a].name if a in names else a),
        "servicePoint": values(points, lambda p: sps[p][0].name if p in sps else str(p)),
        "accessType": values(access, lambda t: ACCESS_LABELS.get(t, t)),
    }


__all__ = ["FacetValue", "Hit", "SearchResults", "search"]
