"""Archiver benchmark: nginx on 127.0.0.1 serving 10,000 small files and one 2 GB file.

Prints, one figure a line:
- a plain script's rate on the same files (requests + a pool of 8 threads, md5 and sha256
  while streaming, temporary file + rename): the baseline
- first sweep of a (fake, local) CKAN portal listing the files through the path users run
  at scale (`--mode celery`, the default): a prefork Celery worker on a Redis broker of the
  benchmark's own and PostgreSQL; resources/s and the ratio to the baseline (target >= 0.5x).
  Politeness is off: no per-host delay, and the per-host concurrency is every archive thread
  of every worker process, so the host gate never binds. The workers' CPU per resource
  (user + system, from /proc) is printed next to the plain script's.
- the same in one process (`--mode inline`: the sweep's parts run on threads here)
- second sweep, nothing changed (conditional requests, only 304s): resources/s and the
  speed-up over the first (target >= 5x)
- the 2 GB file archived by `exporter archive URL` in a child process: MB/s next to
  `curl -s -o FILE URL && sha256sum FILE` run here too (target >= 0.7x of curl), and the
  child's peak RSS (target < 150 MB)

Usage: .venv/bin/python bench/bench_archive.py [--files 10000] [--big-mb 2048] [--workers 8]
           [--mode celery|inline|both] [--concurrency 2] [--threads N] [--batch-size 1000]
           [--database-url URL] [--worker-log PATH] [--skip-big]
           (celery: a fresh PostgreSQL database on 127.0.0.1:5432 unless --database-url;
            inline: SQLite in the temp dir unless --database-url)
Everything lives in a temp dir that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter import jobs, migrate, runner  # noqa: E402
from exporter.archiver.portals import add_portal  # noqa: E402
from exporter.archiver.sweep import inline_dispatcher  # noqa: E402
from exporter.config import load_settings  # noqa: E402
from exporter.context import Context, set_context  # noqa: E402
from tests.http_servers import FakeCKAN, Nginx, ckan_package  # noqa: E402
from tests.workers import RedisServer, WorkerProcess, sender  # noqa: E402

MB = 1024 * 1024


def vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds the processes have used so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / ticks, system / ticks


def cpu_line(before: tuple[float, float], after: tuple[float, float], resources: int) -> str:
    user, system = ((a - b) * 1000 / max(1, resources) for a, b in zip(after, before, strict=True))
    return f"{user + system:.2f} ms a resource ({user:.2f} user + {system:.2f} system)"


def worker_pids(pid: int) -> list[int]:
    """The worker's process and its children (the prefork pool)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def make_files(root: Path, count: int, big_mb: int) -> None:
    block = os.urandom(MB)
    for i in range(count):
        d = root / f"d{i // 1000:02d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"r{i:05d}.csv").write_bytes(b"id,value\n" + f"{i},{i * 7}\n".encode() * (1 + i % 50))
    with open(root / "big.bin", "wb") as fh:
        for n in range(big_mb):
            fh.write(block[n % 7 :] + block[: n % 7])  # every MB differs a little


def env_for(tmp: Path, database_url: str | None, workers: int, batch_size: int = 1000) -> dict[str, str]:
    env = {
        "EXPORTER_VAR_DIR": str(tmp / "var"),
        "EXPORTER_SECRET_KEY": "bench-secret-key-0123456789",
        "EXPORTER_BROKER_URL": "memory://",
        "EXPORTER_ARCHIVER_ALLOW_NETWORKS": "127.0.0.1/32",
        "EXPORTER_ARCHIVER_HOST_CONCURRENCY": str(workers),
        "EXPORTER_ARCHIVER_HOST_DELAY_MS": "0",
        "EXPORTER_ARCHIVER_MAX_BYTES": str(4 * 1024 * MB),
        "EXPORTER_ARCHIVER_BATCH_SIZE": str(batch_size),
        "EXPORTER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["EXPORTER_DATABASE_URL"] = database_url
    return env


def sweep(ctx: Context, portal: str, recheck: str, workers: int) -> tuple[float, dict]:
    """One sweep with its parts on threads of this process (the inline shortcut)."""
    enqueue, shutdown = inline_dispatcher(ctx, workers=workers)
    ctx.enqueue = enqueue
    started = time.perf_counter()
    try:
        job = jobs.submit(ctx, "sweep_portal", {"portal": portal, "recheck": recheck}, enqueue=False)
        runner.run_job(ctx, job.id)
    finally:
        shutdown()
    return _finished(ctx, job.id, started)


def _finished(ctx: Context, job_id: str, started: float) -> tuple[float, dict]:
    from exporter.parts import JobFanout

    elapsed = time.perf_counter() - started
    job = jobs.get(ctx, job_id)
    if job.status != "succeeded":
        raise SystemExit(f"sweep failed: {job.status} {job.error}")
    with ctx.db.session() as s:
        fan = s.get(JobFanout, job_id)
        fanned = fan.created_at if fan else job.finished_at
    job.result["phases"] = {
        "queued_s": round((job.started_at - job.created_at).total_seconds(), 2),
        "enumerate_s": round((fanned - job.started_at).total_seconds(), 2),
        "parts_s": round((job.finished_at - fanned).total_seconds(), 2),
    }
    return elapsed, job.result


def celery_sweep(ctx: Context, portal: str, recheck: str, timeout: float = 3600) -> tuple[float, dict]:
    """One sweep submitted as users do, run by the prefork worker; timed from submit to success."""
    started = time.perf_counter()
    job = jobs.submit(ctx, "sweep_portal", {"portal": portal, "recheck": recheck})
    deadline = time.monotonic() + timeout
    while jobs.get(ctx, job.id).status in ("pending", "running"):
        if time.monotonic() > deadline:
            raise SystemExit(f"sweep {job.id} did not end within {timeout:.0f}s")
        time.sleep(0.05)
    return _finished(ctx, job.id, started)


def baseline(urls: list[str], workers: int, out: Path) -> float:
    """What a plain script does: requests with a pool of threads, md5 and sha256 while
    streaming, a temporary file renamed into place. Returns seconds."""
    import hashlib
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    out.mkdir(parents=True, exist_ok=True)
    local = threading.local()

    def get(i_url: tuple[int, str]) -> int:
        i, url = i_url
        session = getattr(local, "session", None) or setattr(local, "session", requests.Session()) or local.session
        md5, sha = hashlib.md5(), hashlib.sha256()
        tmp = out / f".{i}.tmp"
        with session.get(url, stream=True, timeout=30) as resp, open(tmp, "wb") as fh:
            resp.raise_for_status()
            for chunk in resp.iter_content(1024 * 1024):
                md5.update(chunk)
                sha.update(chunk)
                fh.write(chunk)
        os.replace(tmp, out / f"{i}-{sha.hexdigest()[:16]}")
        return 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = sum(pool.map(get, enumerate(urls)))
    assert done == len(urls)
    return time.perf_counter() - started


def fresh_pg_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database for this run, migrated; returns (url, drop)."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"bench_archive_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return url, drop


def report_first(label: str, first: float, r1: dict, base_rate: float) -> None:
    rate1 = r1["checked"] / first
    print(f"{label} first sweep: {r1['checked']} resources in {first:.1f}s = {rate1:.0f} resources/s  statuses={r1['statuses']}")
    print(f"{label} first sweep vs plain script: {rate1 / base_rate:.2f}x (target >= 0.5x)  phases={r1['phases']}", flush=True)


def report_second(label: str, first: float, second: float, r2: dict) -> None:
    rate2 = r2["checked"] / second
    print(f"{label} second sweep (nothing changed): {r2['checked']} resources in {second:.1f}s = {rate2:.0f} resources/s  statuses={r2['statuses']}, settled by a bulk 304: {r2['not_modified']}  phases={r2['phases']}")
    print(f"{label} second vs first: {first / second:.1f}x faster (target >= 5x)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mb", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--database-url")
    ap.add_argument("--mode", choices=("celery", "inline", "both"), default="celery")
    ap.add_argument("--concurrency", type=int, default=2, help="Worker processes of the Celery worker (prefork).")
    ap.add_argument("--threads", type=int, help="Archive threads per Celery worker process (ARCHIVER_THREADS; default: --workers).")
    ap.add_argument("--batch-size", type=int, default=1000, help="Resources per part (ARCHIVER_BATCH_SIZE).")
    ap.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--skip-sweeps", action="store_true", help="Only the 2 GB file.")
    ap.add_argument("--skip-big", action="store_true", help="No 2 GB file.")
    ap.add_argument("--worker-log", type=Path, help="Keep the Celery worker's log here (each part's timings: read, fetch, sync, write, WARC).")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    nginx = site = None
    try:
        www = tmp / "www"
        www.mkdir()
        t = time.perf_counter()
        make_files(www, args.files, 0 if args.skip_big else args.big_mb)
        print(f"setup: {args.files} small files + {args.big_mb} MB file in {time.perf_counter() - t:.1f}s")
        nginx = Nginx(www, tmp / "nginx", workers=2).start()
        packages = []
        for p in range(0, args.files, 10):
            rows = [(f"res-{i:05d}", f"{nginx.url}/d{i // 1000:02d}/r{i:05d}.csv") for i in range(p, min(p + 10, args.files))]
            packages.append(ckan_package(f"pkg-{p:05d}", f"org-{p % 7}", rows))
        site = FakeCKAN(packages, max_rows=1000).start()

        urls = [f"{nginx.url}/d{i // 1000:02d}/r{i:05d}.csv" for i in range(args.files)]
        if not args.skip_sweeps:
            baseline(urls[: min(500, len(urls))], args.workers, tmp / "warmup")  # nginx and the page cache warm
            cpu = cpu_seconds([os.getpid()])
            base_s = baseline(urls, args.workers, tmp / "plain")
            base_cpu = cpu_line(cpu, cpu_seconds([os.getpid()]), len(urls))
            base_rate = len(urls) / base_s
            print(f"plain script (requests, {args.workers} threads, md5+sha256, temp file + rename): {len(urls)} files in {base_s:.1f}s = {base_rate:.0f} files/s, CPU {base_cpu}", flush=True)
            shutil.rmtree(tmp / "plain", ignore_errors=True)

        env = env_for(tmp, args.database_url, args.workers, args.batch_size)
        if not args.skip_sweeps and args.mode in ("celery", "both"):
            drop = None
            url = args.database_url
            if not url:
                url, drop = fresh_pg_database(args.pg_admin_url)
            redis_server = RedisServer(tmp).start()
            worker = None
            try:
                threads = args.threads or args.workers
                # Politeness off: no delay, and a host's concurrency is every archive thread of every
                # worker process (the inline mode's is its threads), so the host gate never binds.
                cenv = {
                    **env, "EXPORTER_DATABASE_URL": url, "EXPORTER_BROKER_URL": redis_server.url, "EXPORTER_LOG_LEVEL": "INFO",
                    "EXPORTER_ARCHIVER_HOST_CONCURRENCY": str(threads * args.concurrency), "EXPORTER_ARCHIVER_THREADS": str(threads),
                }
                settings = load_settings(cenv)
                migrate.upgrade(settings.database_url)
                ctx = Context(settings)
                set_context(ctx)
                ctx.enqueue = sender(redis_server.url)
                add_portal(ctx, "bench", site.url)
                worker = WorkerProcess({**os.environ, **cenv, "PYTHONPATH": str(ROOT)}, tmp / "worker.log", queues="engine,archive", pool="prefork", concurrency=args.concurrency)
                pids = worker_pids(worker.proc.pid)
                label = f"celery (prefork x{args.concurrency}, {threads} threads each, parts of {args.batch_size}, Redis, PostgreSQL)"
                cpu0 = cpu_seconds(pids)
                first, r1 = celery_sweep(ctx, "bench", "due")
                cpu1 = cpu_seconds(pids)
                report_first(label, first, r1, base_rate)
                second, r2 = celery_sweep(ctx, "bench", "all")
                cpu2 = cpu_seconds(pids)
                report_second(label, first, second, r2)
                print(f"celery workers' CPU (all processes): first sweep {cpu_line(cpu0, cpu1, r1['checked'])}; second {cpu_line(cpu1, cpu2, r2['checked'])}")
                rss = sum(vm_hwm_kb(pid) for pid in worker_pids(worker.proc.pid)) / 1024
                print(f"celery worker processes' peak RSS (sum of {args.concurrency} + parent): {rss:.0f} MB")
                ctx.close()
            finally:
                if worker is not None:
                    worker.stop()
                    if args.worker_log:
                        shutil.copyfile(tmp / "worker.log", args.worker_log)
                redis_server.kill()
                if drop is not None:
                    drop()

        settings = load_settings(env)
        migrate.upgrade(settings.database_url)
        ctx = Context(settings)
        set_context(ctx)
        add_portal(ctx, "bench", site.url)
        if not args.skip_sweeps and args.mode in ("inline", "both"):
            label = f"inline ({args.workers} threads, one process)"
            first, r1 = sweep(ctx, "bench", "due", args.workers)
            report_first(label, first, r1, base_rate)
            second, r2 = sweep(ctx, "bench", "all", args.workers)
            report_second(label, first, second, r2)
            print(f"inline process (bench + fake CKAN + archive threads) peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        if args.skip_big:
            return

        url = f"{nginx.url}/big.bin"
        size = (www / "big.bin").stat().st_size
        out = tmp / "curl.bin"
        subprocess.run(["cat", str(www / "big.bin")], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        t = time.perf_counter()
        sha = subprocess.run(["bash", "-c", f"curl -s -o {out} {url} && sha256sum {out}"], capture_output=True, text=True, check=True).stdout.split()[0]
        curl_s = time.perf_counter() - t
        out.unlink()
        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        with open(tmp / "out.json", "w+") as out_fh, open(tmp / "err.txt", "w+") as err_fh:
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "cli", "archive", url, "--json"], env=child_env, stdout=out_fh, stderr=err_fh)
            rss_kb = 0
            while proc.poll() is None:  # VmHWM: this process image's own peak (getrusage would
                rss_kb = max(rss_kb, vm_hwm_kb(proc.pid))  # report the parent's, inherited at fork)
                time.sleep(0.05)
            ours_s = time.perf_counter() - t
            out_fh.seek(0)
            err_fh.seek(0)
            stdout, stderr = out_fh.read(), err_fh.read()
        if proc.returncode != 0:
            raise SystemExit(f"archive failed: {stdout} {stderr}")
        record = json.loads(stdout)["archival"]
        rss = rss_kb / 1024
        assert record["sha256"] == sha, (record["sha256"], sha)
        print(f"curl -s -o FILE URL && sha256sum FILE: {size / MB / curl_s:.0f} MB/s ({curl_s:.1f}s)")
        print(f"exporter archive URL (md5+sha256, stored, process start included): {size / MB / ours_s:.0f} MB/s ({ours_s:.1f}s)")
        print(f"archiver vs curl: {curl_s / ours_s:.2f}x (target >= 0.7x)")
        print(f"archiver peak RSS (2 GB file): {rss:.0f} MB (target < 150 MB)")
    finally:
        if site:
            site.stop()
        if nginx:
            nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
