"""Benchmark: public search and OAI-PMH over 1,000,000 raids in PostgreSQL.

Loads synthetic raids with COPY into a scratch database (kept between runs: --reuse skips
loading and indexing), builds the search index (`rebuild`, timed), then prints one line per
figure:

- index build: seconds and raids/s for the full rebuild (and an incremental refresh of 1% changed raids);
- query latency p50/p95 (ms) over repeated typical queries: one word, two words, a phrase,
  OR, an exclusion, an ORCID, each with and without filters (agency, access type, start
  dates), plus date sort and a deep page; target p95 < 50 ms;
- a full OAI-PMH ListRecords harvest (oai_dc) of the agency through resumption tokens:
  records/s, against the public export's records/s for the same agency (same process tree).

    .venv/bin/python bench/bench_search.py [--raids 1000000] [--reuse] [--repeat 20] [--harvest-limit 0] [--skip-harvest | --skip-queries] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_export  # noqa: E402
from bench.bench_export import AGENCY, COLUMNS, PG_ADMIN, SERVICE_POINTS  # noqa: E402

DB = "exporter_bench_search"
SECOND_AGENCY = "https://ror.org/02stey378"
SECOND_SPS = [30000000, 30000001]


def db_url() -> str:
    return bench_export.db_url(db=DB)


def psql_url() -> str:
    return bench_export.psql_url(db=DB)


def context(work: Path):
    from exporter.config import load_settings
    from exporter.context import Context

    return Context(load_settings(bench_export.settings_env(work, db=DB)))


def load(n: int) -> float:
    """A fresh database with n raids: 90% of one agency (4 service points), 10% of another."""
    import psycopg

    from exporter import migrate
    from exporter.db import utcnow
    from exporter.raids.generator import raid_rows

    started = time.monotonic()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    migrate.upgrade(db_url())
    with psycopg.connect(psql_url()) as conn:
        for agency, sps in ((AGENCY, SERVICE_POINTS), (SECOND_AGENCY, SECOND_SPS)):
            short = agency.rsplit("/", 1)[1]
            conn.execute("INSERT INTO registration_agencies (id, ror, name, created_at) VALUES (%s, %s, %s, now())", (short, agency, f"Bench agency {short}"))
            for sp in sps:
                conn.execute("INSERT INTO service_points (id, agency_id, name, created_at) VALUES (%s, %s, 'Bench SP', now())", (sp, short))
        with conn.cursor().copy(f"COPY raids ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for agency, sps, count, seed in ((AGENCY, SERVICE_POINTS, n - n // 10, 1), (SECOND_AGENCY, SECOND_SPS, n // 10, 2)):
                for row in raid_rows(count, agency, sps, seed=seed, handle_prefix=f"https://raid.org.au/10378.1/s{seed}-", now=utcnow()):
                    copy.write_row((row["handle"], row["service_point_id"], json.dumps(row["record"]), row["title"], row["access_type"], row["access_statement"], row["access_statement_language"], row["embargo_expiry"], row["created_at"], row["updated_at"], row["version"]))
        conn.commit()
    with psycopg.connect(psql_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE raids")
    return time.monotonic() - started


def build_index(ctx) -> dict:
    import psycopg

    from exporter.discovery import index

    started = time.monotonic()
    result = index.rebuild(ctx)
    seconds = time.monotonic() - started
    with psycopg.connect(psql_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE raid_search")
        size = conn.execute("SELECT pg_total_relation_size('raid_search'), pg_relation_size('ix_raid_search_tsv')").fetchone()
    return {"seconds": seconds, "rows": result.get("scanned", 0), "table_mb": size[0] / 1e6, "gin_mb": size[1] / 1e6}


def incremental(ctx, fraction: float = 0.01) -> dict:
    """Touch a fraction of the raids by raw SQL (the trigger moves updated_at) and time the refresh."""
    import psycopg

    from exporter.discovery import index

    index.refresh(ctx)
    with psycopg.connect(psql_url(), autocommit=True) as conn:
        changed = conn.execute("UPDATE raids SET title = title WHERE id %% %s = 0", (int(1 / fraction),)).rowcount
    started = time.monotonic()
    result = index.refresh(ctx)
    return {"seconds": time.monotonic() - started, "changed": changed, "result": result}


def queries(ctx) -> list[tuple[str, dict]]:
    from sqlalchemy import text

    with ctx.db.session() as s:
        orcid = s.execute(text("SELECT metadata->'contributor'->0->>'id' FROM raids WHERE access_type = 'open' LIMIT 1")).scalar()
    short = AGENCY.rsplit("/", 1)[1]
    base = [
        ("one word", {"q": "genome"}),
        ("two words", {"q": "coastal erosion"}),
        ("a phrase", {"q": '"soil carbon"'}),
        ("OR", {"q": "pulsar OR koala"}),
        ("exclusion", {"q": "reef -monitoring"}),
        ("an ORCID", {"q": orcid}),
        ("rare word (no match)", {"q": "zyzzyva"}),
    ]
    out = []
    for name, kw in base:
        out.append((name, kw))
        out.append((name + " + agency & access filters", dict(kw, agency=short, access_type="open")))
    out.append(("one word + the second agency (its raids all at the end of the table)", {"q": "genome", "agency": SECOND_AGENCY.rsplit("/", 1)[1]}))
    out.append(("one word + start-date range", {"q": "genome", "start_from": "2023-01-01", "start_until": "2023-06-30"}))
    out.append(("one word, sorted by date", {"q": "genome", "sort": "date"}))
    out.append(("no words, agency filter, by date", {"q": "", "agency": short}))
    out.append(("one word, page 50", {"q": "genome", "page": 50}))
    return out


def latency(ctx, repeat: int) -> list[dict]:
    from exporter.discovery.search import search

    rows = []
    cases = queries(ctx)
    for name, kw in cases:
        search(ctx, **kw)  # warm
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            res = search(ctx, **kw)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        rows.append({"query": name, "p50": statistics.median(times), "p95": times[max(0, int(round(0.95 * len(times))) - 1)], "total": res.total, "exact": res.total_exact})
    return rows


def harvest(ctx, limit: int) -> dict:
    """A full ListRecords harvest of the agency's set through resumption tokens, in process."""
    from lxml import etree

    from exporter.discovery import oai

    short = AGENCY.rsplit("/", 1)[1]
    params = [("verb", "ListRecords"), ("metadataPrefix", "oai_dc"), ("set", f"agency:{short}")]
    ns = {"o": "http://www.openarchives.org/OAI/2.0/"}
    records = 0
    started = time.monotonic()
    while True:
        root = etree.fromstring(oai.respond(ctx, params, "http://bench/oai"))
        records += len(root.findall(".//o:record", ns))
        token = root.find(".//o:resumptionToken", ns)
        if token is None or not (token.text or "").strip() or (limit and records >= limit):
            break
        params = [("verb", "ListRecords"), ("resumptionToken", token.text.strip())]
    return {"records": records, "seconds": time.monotonic() - started}


def export(ctx) -> dict:
    from exporter import jobs, runner

    job = jobs.submit(ctx, "export_public", {"agency": AGENCY, "mode": "full", "sitemaps": False}, enqueue=False)
    started = time.monotonic()
    status = runner.run_job(ctx, job.id)
    seconds = time.monotonic() - started
    done = jobs.get(ctx, job.id)
    assert status == "succeeded", done.error
    return {"records": done.result["counts"]["records"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raids", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded and indexed database of an earlier run")
    parser.add_argument("--reindex", action="store_true", help="keep the loaded raids of an earlier run, build the index again")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--harvest-limit", type=int, default=0, help="stop the harvest after this many records (0: all)")
    parser.add_argument("--skip-harvest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true", help="only the harvest and the export (the queries timed in a run of their own)")
    parser.add_argument("--count-limits", default="", help="comma-separated SEARCH_COUNT_LIMIT values to measure the queries with (default: the setting's default)")
    parser.add_argument("--oai-page-size", type=int, default=0, help="OAI_PAGE_SIZE for the harvest (default: the setting's default)")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "search"))
    parser.add_argument("--results", help="append the figures to this markdown file")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    built_file = work / "build.txt"
    if args.reuse:
        for line in built_file.read_text().splitlines():
            say(line + " (from the run that built the index)")
    elif args.reindex:
        import psycopg

        with psycopg.connect(psql_url(), autocommit=True) as conn:
            conn.execute("TRUNCATE raid_search, search_state")
            raids = conn.execute("SELECT count(*) FROM raids").fetchone()[0]
        say(f"reusing {raids} raids loaded by an earlier run")
    else:
        say(f"loaded: {args.raids} raids in {load(args.raids):.1f} s (COPY)")
    ctx = context(work)
    if not args.reuse:
        built = build_index(ctx)
        say(f"index build (rebuild): {built['rows']} raids in {built['seconds']:.1f} s = {built['rows'] / built['seconds']:.0f} raids/s; raid_search {built['table_mb']:.0f} MB, GIN {built['gin_mb']:.0f} MB")
        inc = incremental(ctx)
        say(f"incremental refresh: {inc['changed']} changed raids in {inc['seconds']:.1f} s ({inc['result']})")
        built_file.write_text("\n".join(lines) + "\n")
    limits = [int(n) for n in args.count_limits.split(",") if n] or [ctx.settings.search_count_limit]
    for limit in [] if args.skip_queries else limits:
        ctx.settings = ctx.settings.replace(search_count_limit=limit)
        say(f"-- queries with SEARCH_COUNT_LIMIT={limit}, {args.repeat} runs each")
        for row in latency(ctx, args.repeat):
            total = f"{row['total']:,}" + ("" if row["exact"] else "+")
            say(f"query {row['query']}: p50 {row['p50']:.1f} ms, p95 {row['p95']:.1f} ms (matches {total})")
    if args.oai_page_size:
        ctx.settings = ctx.settings.replace(oai_page_size=args.oai_page_size)
    if not args.skip_harvest:
        h = harvest(ctx, args.harvest_limit)
        e = export(ctx)
        h_rate, e_rate = h["records"] / h["seconds"], e["records"] / e["seconds"]
        say(f"OAI-PMH ListRecords oai_dc harvest of the agency ({ctx.settings.oai_page_size} records a response{f', first {args.harvest_limit} records' if args.harvest_limit else ''}): {h['records']} records in {h['seconds']:.1f} s = {h_rate:.0f} records/s")
        say(f"public export of the agency (no sitemaps): {e['records']} records in {e['seconds']:.1f} s = {e_rate:.0f} records/s")
        say(f"harvest vs export: {h_rate / e_rate:.2f}x")
    say(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.results:
        with open(args.results, "a") as fh:
            fh.write("\n## Search and OAI-PMH (bench/bench_search.py)\n\n")
            fh.write(f"Command: `.venv/bin/python bench/bench_search.py {' '.join(sys.argv[1:])}` (run {time.strftime('%Y-%m-%d', time.gmtime())}).\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
