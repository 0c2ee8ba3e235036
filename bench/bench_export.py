"""Benchmark: a full public RAiD export vs `psql \\copy (select metadata ...) | gzip -1`.

Generates raids in a scratch PostgreSQL database (COPY, in batches), then for each size
runs both, each in a child process, and prints wall time and peak RSS side by side as
ratios. Targets: our export within 1.5x of the baseline's time, peak RSS under 200 MB.

    .venv/bin/python bench/bench_export.py [--sizes 100000,1000000] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("EXPORTER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DB = "exporter_bench"
AGENCY = "https://ror.org/038sjwq14"
SERVICE_POINTS = [20000000, 20000001, 20000002, 20000003]
COLUMNS = ("handle", "service_point_id", "metadata", "title", "access_type", "access_statement", "access_statement_language", "embargo_expiry", "created_at", "updated_at", "version")

# Runs a command and reports the peak RSS of its process tree's largest process (KiB).
WRAPPER = "import json, resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; print(json.dumps({'rc': rc, 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"


def db_url(driver: str = "postgresql+psycopg", db: str = DB) -> str:
    return PG_ADMIN.replace("postgresql://", f"{driver}://", 1).rsplit("/", 1)[0] + "/" + db


def psql_url(db: str = DB) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


def settings_env(work: Path, db: str = DB) -> dict[str, str]:
    return {
        "EXPORTER_VAR_DIR": str(work / "var"),
        "EXPORTER_DATABASE_URL": db_url(db=db),
        "EXPORTER_STORAGE_URL": f"file://{work / 'storage'}",
        "EXPORTER_SECRET_KEY": "bench-secret-key-0123456789",
        "EXPORTER_BROKER_URL": "memory://",
        "EXPORTER_LOG_LEVEL": "WARNING",
    }


def reset_database() -> None:
    import psycopg

    from exporter import migrate

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    migrate.upgrade(db_url())


def add_raids(n: int, seed: int) -> float:
    """Append n synthetic raids with COPY; returns seconds taken."""
    import psycopg

    from exporter.db import utcnow
    from exporter.raids.generator import raid_rows

    started = time.monotonic()
    with psycopg.connect(psql_url()) as conn:
        conn.execute("INSERT INTO registration_agencies (id, ror, name, created_at) VALUES ('038sjwq14', %s, 'Bench agency', now()) ON CONFLICT DO NOTHING", (AGENCY,))
        for sp in SERVICE_POINTS:
            conn.execute("INSERT INTO service_points (id, agency_id, name, created_at) VALUES (%s, '038sjwq14', 'Bench SP', now()) ON CONFLICT DO NOTHING", (sp,))
        with conn.cursor().copy(f"COPY raids ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in raid_rows(n, AGENCY, SERVICE_POINTS, seed=seed, handle_prefix=f"https://raid.org.au/10378.1/b{seed}-", now=utcnow()):
                copy.write_row((row["handle"], row["service_point_id"], json.dumps(row["record"]), row["title"], row["access_type"], row["access_statement"], row["access_statement_language"], row["embargo_expiry"], row["created_at"], row["updated_at"], row["version"]))
        conn.commit()
    with psycopg.connect(psql_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE raids")
    return time.monotonic() - started


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of a command run in a child process."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {out.stderr[-2000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise SystemExit(f"{argv[:3]} exited {report['rc']}: {out.stderr[-2000:]}")
    return wall, report["maxrss_kb"]


def run_export_child(work: str) -> None:
    """In a child process: one full public export of the agency, to local storage."""
    from exporter import jobs, runner
    from exporter.config import load_settings
    from exporter.context import Context

    ctx = Context(load_settings(settings_env(Path(work))))
    job = jobs.submit(ctx, "export_public", {"agency": AGENCY, "mode": "full"}, enqueue=False)
    status = runner.run_job(ctx, job.id)
    done = jobs.get(ctx, job.id)
    if status != "succeeded":
        raise SystemExit(f"export {status}: {done.error}")
    archive = next(a for a in done.artifacts if a.name == "archive")
    (Path(work) / "last.json").write_text(json.dumps({"archive_bytes": archive.size, "records": done.result["counts"]["records"], "objects": len(done.artifacts)}))


def bench_size(n: int, work: Path) -> dict:
    storage = work / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    baseline_file = work / "baseline.jsonl.gz"
    copy = f"psql {psql_url()} -q -c \"\\copy (select metadata from raids where deleted_at is null) to stdout\" | gzip -1 > {baseline_file}"
    base_wall, base_rss = measure(["bash", "-o", "pipefail", "-c", copy])
    env = dict(os.environ, **settings_env(work))
    ours_wall, ours_rss = measure([sys.executable, str(Path(__file__).resolve()), "--child-export", str(work)], env=env)
    last = json.loads((work / "last.json").read_text())
    assert last["records"] == n, last
    return {
        "n": n,
        "export_seconds": round(ours_wall, 2),
        "baseline_seconds": round(base_wall, 2),
        "time_ratio": round(ours_wall / base_wall, 2),
        "export_peak_rss_mb": round(ours_rss / 1024, 1),
        "baseline_peak_rss_mb": round(base_rss / 1024, 1),
        "rss_ratio": round(ours_rss / base_rss, 2),
        "archive_mb": round(last["archive_bytes"] / 1e6, 1),
        "baseline_mb": round(baseline_file.stat().st_size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "export"))
    parser.add_argument("--results", help="append a section with the figures to this markdown file")
    parser.add_argument("--child-export", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_export:
        run_export_child(args.child_export)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reset_database()
    have, rows = 0, []
    for n in sizes:
        gen = add_raids(n - have, seed=n)
        have = n
        print(f"generated: n={n} seconds={gen:.1f}", flush=True)
        r = bench_size(n, work)
        rows.append(r)
        print(f"n={n} time_ratio={r['time_ratio']} (export {r['export_seconds']} s / baseline {r['baseline_seconds']} s)", flush=True)
        print(f"n={n} export_peak_rss_mb={r['export_peak_rss_mb']} (baseline {r['baseline_peak_rss_mb']} MB, ratio {r['rss_ratio']})", flush=True)
        print(f"n={n} archive_mb={r['archive_mb']} baseline_mb={r['baseline_mb']}", flush=True)
    if args.results:
        write_results(Path(args.results), rows, args.sizes)


def write_results(path: Path, rows: list[dict], sizes: str) -> None:
    lines = [
        "",
        "## RAiD public export vs `psql \\copy | gzip -1` (bench/bench_export.py)",
        "",
        f"Command: `.venv/bin/python bench/bench_export.py --sizes {sizes} --results bench/RESULTS.md` "
        f"(run {time.strftime('%Y-%m-%d', time.gmtime())}). Full public export of one agency with sitemaps and HTML index, "
        "zip at EXPORTER_EXPORT_COMPRESS_LEVEL=1, to local storage; baseline `psql -c \"\\copy (select metadata from raids "
        "where deleted_at is null) to stdout\" | gzip -1 > file`. Wall time includes process start; peak RSS is the "
        "largest process of each side (ru_maxrss of children). Targets: time ratio <= 1.5, export peak RSS < 200 MB.",
        "",
        "| raids | export s | baseline s | time ratio | export peak RSS MB | baseline peak RSS MB | archive MB | baseline .gz MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['export_seconds']} | {r['baseline_seconds']} | {r['time_ratio']} | {r['export_peak_rss_mb']} | {r['baseline_peak_rss_mb']} | {r['archive_mb']} | {r['baseline_mb']} |")
    with open(path, "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
