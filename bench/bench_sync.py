"""Benchmark: `exporter sync` from a dump vs `aws s3 sync --delete` and `rclone sync` from a
bucket of per-record objects (the ORCID layout), all on moto's S3 server over HTTP.

Generates N raids in a scratch PostgreSQL database, publishes the agency's dump to a bucket,
and keeps three copies of the same local mirror (one file per raid, sharded by the last three
characters of the handle's suffix), each tool in its own child process:

1. the first full copy;
2. a run with nothing changed;
3. a run after 1% of the raids changed and 0.1% were deleted (the dump publishes one change
   set; the per-record bucket gets the changed objects put and the deleted ones removed).

Prints wall time and the HTTP requests moto answered for each run, as ratios against ours, and
checks after every phase that the three folders hold the same files with the same bytes.
Targets: nothing-changed run >= 20x faster than aws s3 sync; 1% run >= 5x faster; first copy
within 1.5x of rclone's.

    .venv/bin/python bench/bench_sync.py [--raids 20000] [--results bench/RESULTS.md]

Needs `aws` (awscli from PyPI) and `rclone` (Debian) on PATH, PostgreSQL as for the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("EXPORTER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DB = "exporter_bench_sync"
AGENCY = "038sjwq14"
DUMP_BUCKET, RECORD_BUCKET = "dump-bucket", "record-bucket"
SERVICE_POINTS = [20000000, 20000001]


class CountingMoto:
    """moto's S3 server on a werkzeug thread, counting every request it answers."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.lock = threading.Lock()
        self.count = 0
        inner = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            with self.lock:
                self.count += 1
            return inner(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def reset_database() -> str:
    import psycopg

    from exporter import migrate

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    url = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + "/" + DB
    migrate.upgrade(url)
    return url


def tree_digest(folder: Path) -> tuple[int, str]:
    """(files, digest of every path and its bytes), the client's own state left out."""
    h = hashlib.sha256()
    n = 0
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if not path.is_file() or rel.startswith(".exporter-sync"):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes())
        n += 1
    return n, h.hexdigest()


def timed(moto: CountingMoto, argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    before = moto.count
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, moto.count - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raids", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--results", help="append the figures to this markdown file")
    args = parser.parse_args()
    for tool in ("aws", "rclone"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH (aws: pip install awscli; rclone: apt-get install rclone)")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    moto = CountingMoto()
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    for bucket in (DUMP_BUCKET, RECORD_BUCKET):
        s3.create_bucket(Bucket=bucket)

    from exporter.config import load_settings
    from exporter.context import Context
    from exporter.dumps.publish import publish
    from exporter.raids import registry
    from exporter.raids.generator import generate

    settings = load_settings({
        "EXPORTER_VAR_DIR": str(work / "var"), "EXPORTER_DATABASE_URL": reset_database(), "EXPORTER_SECRET_KEY": "bench-secret-key-0123456789",
        "EXPORTER_STORAGE_URL": f"s3://{DUMP_BUCKET}/store", "EXPORTER_S3_ENDPOINT_URL": moto.url, "EXPORTER_EXPORT_SETTLE_SECONDS": "0",
        "EXPORTER_BROKER_URL": "memory://",
    })
    ctx = Context(settings)
    t0 = time.perf_counter()
    generate(ctx, args.raids, agency="https://ror.org/" + AGENCY, service_points=SERVICE_POINTS, seed=11)
    print(f"generated {args.raids} raids in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    first = publish(ctx, AGENCY, "bench001")
    print(f"published change set {first['seq']} (snapshot, {first['parts']} parts) in {time.perf_counter() - t0:.1f} s", flush=True)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses a CA bundle on a plain-HTTP endpoint
    env = {**base, "AWS_ENDPOINT_URL": moto.url, "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
           "RCLONE_CONFIG_MOTO_ENDPOINT": moto.url, "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
           "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"], "RCLONE_CONFIG_MOTO_REGION": "us-east-1"}
    dests = {name: work / name for name in ("exporter", "aws", "rclone")}
    exporter = [sys.executable, "-m", "cli", "sync", f"s3://{DUMP_BUCKET}/store/dumps/{AGENCY}", str(dests["exporter"]), "--workers", str(args.workers), "--no-progress"]
    aws = ["aws", "s3", "sync", f"s3://{RECORD_BUCKET}", str(dests["aws"]), "--delete", "--only-show-errors", "--endpoint-url", moto.url]
    rclone = ["rclone", "sync", f"moto:{RECORD_BUCKET}", str(dests["rclone"]), "--fast-list", "--use-server-modtime", "--transfers", str(args.workers), "--checkers", "16"]
    env_ours = {**env, "PYTHONPATH": str(ROOT)}

    def phase(name: str, before_others=None) -> dict[str, tuple[float, int]]:
        out = {"exporter": timed(moto, exporter, env_ours)}
        if before_others:
            before_others()
        out["aws"] = timed(moto, aws, env)
        out["rclone"] = timed(moto, rclone, env)
        digests = {tool: tree_digest(dests[tool]) for tool in dests}
        if len(set(digests.values())) != 1:
            raise SystemExit(f"{name}: the three mirrors differ: {digests}")
        print(f"{name}: the three mirrors hold the same {digests['exporter'][0]} files", flush=True)
        return out

    def upload_records() -> None:  # the ORCID layout: one object per record, from our mirror's files
        subprocess.run(["rclone", "copy", str(dests["exporter"]), f"moto:{RECORD_BUCKET}", "--exclude", ".exporter-sync*/**", "--exclude", ".exporter-sync.json", "--transfers", "16"], env=env, check=True)

    results = {}
    results["first full copy"] = phase("first full copy", upload_records)
    results["nothing changed"] = phase("nothing changed")

    rng = random.Random(5)
    with ctx.db.session() as s:
        from sqlalchemy import select

        from exporter.raids.models import Raid

        handles = list(s.scalars(select(Raid.handle).where(Raid.deleted_at.is_(None)).order_by(Raid.id)))
    changed = rng.sample(handles, max(1, args.raids // 100))
    deleted = rng.sample(sorted(set(handles) - set(changed)), max(1, args.raids // 1000))
    with ctx.db.session() as s:
        for h in changed:
            registry.update_raid(s, h, {"title": [{"text": f"Changed title {rng.random()}"}]})
        for h in deleted:
            registry.delete_raid(s, h)
    t0 = time.perf_counter()
    third = publish(ctx, AGENCY, "bench002")
    print(f"published change set {third['seq']}: {third['upserts']} upserts, {third['deletes']} deletes in {time.perf_counter() - t0:.1f} s", flush=True)

    def update_records() -> None:
        from exporter.dumps.layout import relative_path

        for h in changed:
            rel = relative_path(h, "json")
            s3.put_object(Bucket=RECORD_BUCKET, Key=rel, Body=(dests["exporter"] / rel).read_bytes())
        for h in deleted:
            s3.delete_object(Bucket=RECORD_BUCKET, Key=relative_path(h, "json"))

    time.sleep(1.1)  # aws s3 sync compares whole seconds of LastModified
    results["1% changed, 0.1% deleted"] = phase("1% changed", update_records)

    lines = [f"| run ({args.raids:,} raids) | exporter sync | aws s3 sync --delete | rclone sync | aws / ours (time) | rclone / ours (time) | requests: ours / aws / rclone |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        (te, re_), (ta, ra), (tr, rr) = r["exporter"], r["aws"], r["rclone"]
        lines.append(f"| {name} | {te:.2f} s | {ta:.2f} s | {tr:.2f} s | {ta / te:.1f}x | {tr / te:.1f}x | {re_} / {ra} / {rr} |")
    table = "\n".join(lines)
    print(table)
    for name, r in results.items():
        print(f"ratio {name}: aws/ours {r['aws'][0] / r['exporter'][0]:.1f}x, rclone/ours {r['rclone'][0] / r['exporter'][0]:.2f}x; requests aws/ours {r['aws'][1] / max(1, r['exporter'][1]):.0f}x")
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(f"\n### {time.strftime('%Y-%m-%d')}: `bench/bench_sync.py --raids {args.raids}`\n\n{table}\n")
    ctx.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
