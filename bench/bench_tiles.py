"""Tiles benchmark: nginx on 127.0.0.1 serving a folder of generated 256x256 PNG tiles, an ROI of
about 20,000 tiles at one zoom level.

Prints, one figure a line:
- `exporter export tiles --wait` in a child process (the real CLI: SQLite, the archiver's safe
  session, host slots, retries, a GeoPackage committed every TILES_COMMIT_EVERY tiles, then
  streamed to local storage with its sha256 and the sidecar): tiles/s and peak RSS
- a plain threaded script doing the same fetches (requests, one session per thread) and
  inserting the tiles with sqlite3 `executemany`, also in a child process: tiles/s, peak RSS
- ours vs the script (target >= 0.7x)
- for reference, the size of GDAL's GeoPackage of the same tiles (`gdal_translate` of a GDAL
  WMS/TMS description of the tile server, TILING_SCHEME=InspireCRS84Quad, PNG tiles), if
  Debian's GDAL can read the source, next to ours

Usage: .venv/bin/python bench/bench_tiles.py [--tiles 20000] [--threads 8] [--zoom 12]
Everything lives in a temp dir that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter import migrate  # noqa: E402
from exporter.config import load_settings  # noqa: E402
from exporter.context import Context, set_context  # noqa: E402
from exporter.tiles import grid  # noqa: E402
from exporter.tiles.layers import add_layer  # noqa: E402
from exporter.tiles.roi import iter_tiles, parse_roi  # noqa: E402
from tests.http_servers import Nginx  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_archive import vm_hwm_kb  # noqa: E402  (peak RSS of a child, read the same way)

VARIANTS = 64

BASELINE = r'''
import sqlite3, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import requests
urls_file, db_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
tiles = [line.split() for line in open(urls_file)]
local = threading.local()
def get(t):
    s = getattr(local, "s", None) or setattr(local, "s", requests.Session()) or local.s
    r = s.get(t[3], timeout=30)
    r.raise_for_status()
    return int(t[0]), int(t[1]), int(t[2]), r.content
db = sqlite3.connect(db_path)
db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB, UNIQUE (zoom_level, tile_column, tile_row))")
batch = []
with ThreadPoolExecutor(threads) as pool:
    for row in pool.map(get, tiles):
        batch.append(row)
        if len(batch) >= 500:
            db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", batch); db.commit(); batch = []
db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", batch); db.commit()
print(db.execute("SELECT count(*) FROM tiles").fetchone()[0])
'''


def png(arr: np.ndarray) -> bytes:
    rows = b"".join(b"\x00" + arr[y].tobytes() for y in range(arr.shape[0]))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def variants() -> list[bytes]:
    """Greyscale gradients with a little noise: about 25 KB each, like real PNG map tiles."""
    rng = np.random.default_rng(13)
    base = np.add.outer(np.arange(256), np.arange(256))
    return [png(((base + k * 5) // 2 % 256 + rng.integers(0, 2, (256, 256))).astype(np.uint8)) for k in range(VARIANTS)]


def roi_for(count: int, zoom: int) -> dict:
    """A box of about `count` tiles at `zoom`, aligned to the tile grid, around 35E 31N."""
    size = grid.tile_degrees(zoom)
    cols = int(math.sqrt(count * 2))
    rows = max(1, count // cols)
    west = math.floor(30.0 / size) * size
    north = math.ceil(33.0 / size) * size
    ring = [[west, north - rows * size], [west + cols * size, north - rows * size], [west + cols * size, north], [west, north], [west, north - rows * size]]
    res = grid.resolution(zoom)
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"maxResolutionDeg": res, "minResolutionDeg": res}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}


def timed(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run a child; (seconds, peak RSS MB from VmHWM, stdout)."""
    with open(log, "w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, vm_hwm_kb(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{text[-3000:]}")
    return seconds, peak / 1024, text


def gdal_size(tmp: Path, url: str, roi: dict, zoom: int) -> tuple[int | None, str]:
    """GDAL's GeoPackage of the same tiles, or None and why not."""
    if not shutil.which("gdal_translate"):
        return None, "gdal_translate is not installed (Debian package gdal-bin)"
    cols, rows = grid.matrix_size(0)
    xml = tmp / "source.xml"
    xml.write_text(
        f"<GDAL_WMS><Service name=\"TMS\"><ServerUrl>{url}/${{z}}/${{x}}/${{y}}.png</ServerUrl></Service>"
        f"<DataWindow><UpperLeftX>-180</UpperLeftX><UpperLeftY>90</UpperLeftY><LowerRightX>180</LowerRightX><LowerRightY>-90</LowerRightY>"
        f"<TileLevel>{zoom}</TileLevel><TileCountX>{cols}</TileCountX><TileCountY>{rows}</TileCountY><YOrigin>top</YOrigin></DataWindow>"
        "<Projection>EPSG:4326</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>1</BandsCount>"
        "<MaxConnections>8</MaxConnections><ZeroBlockHttpCodes>404</ZeroBlockHttpCodes></GDAL_WMS>"
    )
    ring = roi["features"][0]["geometry"]["coordinates"][0]
    west, south, east, north = ring[0][0], ring[0][1], ring[2][0], ring[2][1]
    out = tmp / "gdal.gpkg"
    argv = ["gdal_translate", "-q", "-of", "GPKG", "-projwin", str(west), str(north), str(east), str(south),
            "-co", "TILING_SCHEME=InspireCRS84Quad", "-co", "TILE_FORMAT=PNG", str(xml), str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0 or not out.exists():
        return None, f"gdal_translate could not read the source: {done.stderr.strip()[:300]}"
    with sqlite3.connect(out) as db:
        table = db.execute("SELECT table_name FROM gpkg_contents").fetchone()[0]
        n = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    return out.stat().st_size, f"{n} tiles"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--zoom", type=int, default=12)
    ap.add_argument("--skip-gdal", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    nginx = None
    try:
        roi = roi_for(args.tiles, args.zoom)
        tiles = [(z, c, int(r)) for z, c, rows in iter_tiles(parse_roi(roi)) for r in rows]
        www = tmp / "www"
        t = time.perf_counter()
        images = variants()
        for i, (z, c, r) in enumerate(tiles):
            folder = www / "tiles" / str(z) / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{r}.png").write_bytes(images[i % VARIANTS])
        source_bytes = sum(len(images[i % VARIANTS]) for i in range(len(tiles)))
        print(f"setup: {len(tiles)} PNG tiles at zoom {args.zoom} ({source_bytes / 1e6:.0f} MB, ~{source_bytes // len(tiles) // 1000} KB each) in {time.perf_counter() - t:.1f}s")
        subprocess.run(["cat", *map(str, (www / "tiles" / str(args.zoom)).glob("*/0.png"))], stdout=subprocess.DEVNULL, check=False)
        nginx = Nginx(www, tmp / "nginx", workers=2).start()
        url = f"{nginx.url}/tiles"

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")},
            "EXPORTER_VAR_DIR": str(tmp / "var"), "EXPORTER_SECRET_KEY": "bench-secret-key-0123456789", "EXPORTER_BROKER_URL": "memory://",
            "EXPORTER_ARCHIVER_ALLOW_NETWORKS": "127.0.0.1/32", "EXPORTER_ARCHIVER_HOST_CONCURRENCY": str(args.threads),
            "EXPORTER_ARCHIVER_HOST_DELAY_MS": "0", "EXPORTER_TILES_FETCH_THREADS": str(args.threads), "EXPORTER_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        settings = load_settings(env)
        migrate.upgrade(settings.database_url)
        ctx = Context(settings)
        set_context(ctx)
        add_layer(ctx, "bench", url_template=url + "/{z}/{x}/{y}.png", max_zoom=args.zoom)
        (tmp / "roi.geojson").write_text(json.dumps(roi))
        (tmp / "urls.txt").write_text("".join(f"{z} {c} {r} {url}/{z}/{c}/{r}.png\n" for z, c, r in tiles))

        base_s, base_rss, out = timed([sys.executable, "-c", BASELINE, str(tmp / "urls.txt"), str(tmp / "baseline.sqlite"), str(args.threads)], env, tmp / "baseline.log")
        assert int(out.split()[-1]) == len(tiles), out
        ours_s, ours_rss, out = timed([sys.executable, "-m", "cli", "export", "tiles", "--layer", "bench", "--roi", str(tmp / "roi.geojson"), "--wait"], env, tmp / "ours.log")
        assert f"{len(tiles)} tiles written, 0 missing" in out, out
        gpkg = next((tmp / "var" / "storage" / "tiles").rglob("*.gpkg"))
        print(f"plain threaded script (requests, {args.threads} threads, sqlite3 executemany): {len(tiles) / base_s:.0f} tiles/s ({base_s:.1f}s), peak RSS {base_rss:.0f} MB")
        print(f"exporter export tiles --wait ({args.threads} fetch threads, GeoPackage + sha256 + sidecar, process start included): {len(tiles) / ours_s:.0f} tiles/s ({ours_s:.1f}s), peak RSS {ours_rss:.0f} MB")
        print(f"ours vs the script: {base_s / ours_s:.2f}x (target >= 0.7x)")
        print(f"our GeoPackage: {gpkg.stat().st_size / 1e6:.1f} MB for {len(tiles)} tiles ({gpkg.stat().st_size / source_bytes:.3f}x the tile bytes)")
        if not args.skip_gdal:
            t = time.perf_counter()
            size, note = gdal_size(tmp, url, roi, args.zoom)
            if size is None:
                print(f"GDAL reference: {note}")
            else:
                print(f"gdal_translate GeoPackage (re-encoded PNG, {note}, {time.perf_counter() - t:.1f}s): {size / 1e6:.1f} MB; ours/GDAL size {gpkg.stat().st_size / size:.2f}")
    finally:
        if nginx:
            nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
