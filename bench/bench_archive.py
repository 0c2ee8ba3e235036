"""Archiver benchmark: nginx on 127.0.0.1 serving 10,000 small files and one 2 GB file.

Prints, one figure a line:
- first sweep of a (fake, local) CKAN portal listing the 10,000 files: resources/s
- second sweep, nothing changed (conditional requests, only 304s): resources/s and the
  speed-up over the first (target >= 5x)
- the 2 GB file archived by `exporter archive URL` in a child process: MB/s next to
  `curl -s -o FILE URL && sha256sum FILE` run here too (target >= 0.7x of curl), and the
  child's peak RSS (target < 150 MB)

Usage: .venv/bin/python bench/bench_archive.py [--files 10000] [--big-mb 2048] [--workers 8]
           [--database-url URL]   (default: SQLite in the temp dir, the embedded mode)
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter import jobs, migrate, runner  # noqa: E402
from exporter.archiver.portals import add_portal  # noqa: E402
from exporter.archiver.sweep import inline_dispatcher  # noqa: E402
from exporter.config import load_settings  # noqa: E402
from exporter.context import Context, set_context  # noqa: E402
from tests.http_servers import FakeCKAN, Nginx, ckan_package  # noqa: E402

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


def env_for(tmp: Path, database_url: str | None, workers: int) -> dict[str, str]:
    env = {
        "EXPORTER_VAR_DIR": str(tmp / "var"),
        "EXPORTER_SECRET_KEY": "bench-secret-key-0123456789",
        "EXPORTER_BROKER_URL": "memory://",
        "EXPORTER_ARCHIVER_ALLOW_NETWORKS": "127.0.0.1/32",
        "EXPORTER_ARCHIVER_HOST_CONCURRENCY": str(workers),
        "EXPORTER_ARCHIVER_HOST_DELAY_MS": "0",
        "EXPORTER_ARCHIVER_MAX_BYTES": str(4 * 1024 * MB),
        "EXPORTER_ARCHIVER_BATCH_SIZE": "1000",
        "EXPORTER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["EXPORTER_DATABASE_URL"] = database_url
    return env


def sweep(ctx: Context, portal: str, recheck: str, workers: int) -> tuple[float, dict]:
    enqueue, shutdown = inline_dispatcher(ctx, workers=workers)
    ctx.enqueue = enqueue
    started = time.perf_counter()
    try:
        job = jobs.submit(ctx, "sweep_portal", {"portal": portal, "recheck": recheck}, enqueue=False)
        runner.run_job(ctx, job.id)
    finally:
        shutdown()
    elapsed = time.perf_counter() - started
    job = jobs.get(ctx, job.id)
    if job.status != "succeeded":
        raise SystemExit(f"sweep failed: {job.error}")
    return elapsed, job.result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mb", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--database-url")
    ap.add_argument("--skip-sweeps", action="store_true", help="Only the 2 GB file.")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    nginx = site = None
    try:
        www = tmp / "www"
        www.mkdir()
        t = time.perf_counter()
        make_files(www, args.files, args.big_mb)
        print(f"setup: {args.files} small files + {args.big_mb} MB file in {time.perf_counter() - t:.1f}s")
        nginx = Nginx(www, tmp / "nginx", workers=2).start()
        packages = []
        for p in range(0, args.files, 10):
            rows = [(f"res-{i:05d}", f"{nginx.url}/d{i // 1000:02d}/r{i:05d}.csv") for i in range(p, min(p + 10, args.files))]
            packages.append(ckan_package(f"pkg-{p:05d}", f"org-{p % 7}", rows))
        site = FakeCKAN(packages, max_rows=1000).start()

        env = env_for(tmp, args.database_url, args.workers)
        settings = load_settings(env)
        migrate.upgrade(settings.database_url)
        ctx = Context(settings)
        set_context(ctx)
        add_portal(ctx, "bench", site.url)

        if not args.skip_sweeps:
            first, r1 = sweep(ctx, "bench", "due", args.workers)
            rate1 = r1["checked"] / first
            print(f"first sweep: {r1['checked']} resources in {first:.1f}s = {rate1:.0f} resources/s  statuses={r1['statuses']}")
            second, r2 = sweep(ctx, "bench", "all", args.workers)
            rate2 = r2["checked"] / second
            print(f"second sweep (nothing changed): {r2['checked']} resources in {second:.1f}s = {rate2:.0f} resources/s  statuses={r2['statuses']}")
            print(f"second vs first: {first / second:.1f}x faster (target >= 5x)")
            status_304 = sum(1 for line in nginx.access_log() if '" 304 ' in line)
            print(f"nginx answered 304 to {status_304} requests")
            print(f"sweep process (bench + fake CKAN + 8 archive threads) peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

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
