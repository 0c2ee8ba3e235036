"""Collections conversion benchmark: images converted per second, FITS and 16-bit TIFF.

Generates `--count` 4096x4096 float32 FITS images (a noisy sky with stars and a NaN patch)
and `--count` 4096x4096 16-bit TIFFs (a 12-bit range with noise) in a temp folder, then for
each type converts them all to PNG/JPEG under 1,000 KB (Zooniverse's limit) three ways, each
in a child process started afresh (imports and process start included in the time):
- ours on both cores: `exporter.collections.convert.convert` in a process pool of 2 forked
  after the import, the way two prefork worker processes of `exporter up` run it
- ours in one process (the same pool with 1 worker), to separate the converter from the cores
- the baseline: a plain single-process script doing the same astropy/Pillow conversion inline
  (astropy's `AsinhStretch() + ZScaleInterval()` transform on the whole array, a
  min/max stretch for the TIFF, then PNG, JPEG 90..60, and halving until it fits)

Prints, one figure a line: images/s (wall time, process start included), CPU seconds per image
(user + system of the child and its pool, from getrusage(RUSAGE_CHILDREN): the figure to
trust when the machine is shared), peak RSS for each, and the ratios ours vs baseline.
Peak RSS is each process's VmHWM read from /proc by the process itself as it finishes a file:
for the pool, the largest worker and the sum of the workers (both are resident at once).

Usage: .venv/bin/python bench/bench_collections.py [--count 8] [--side 4096]
Everything lives in a temp dir that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1_000_000

# Both children start with this: the peak RSS of the process asking, from /proc.
PRELUDE = r'''
import json, sys
from pathlib import Path

def vm_hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
'''

BASELINE = PRELUDE + r'''
import io
import numpy as np
from astropy.io import fits
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image

def to_image(path):
    if path.suffix == ".fits":
        data = fits.getdata(path)
        scaled = (AsinhStretch() + ZScaleInterval())(data)  # the interval first, then the stretch
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)
        return Image.fromarray(np.flipud((scaled * 255 + 0.5).astype(np.uint8)))
    arr = np.asarray(Image.open(path)).astype(np.float64)
    lo, hi = arr.min(), arr.max()
    return Image.fromarray(((arr - lo) / max(hi - lo, 1) * 255 + 0.5).astype(np.uint8))

def encode(image, fmt, quality=90):
    out = io.BytesIO()
    image.save(out, fmt, quality=quality)
    return out.getvalue()

def fit(image, limit):
    data = encode(image, "PNG")
    if len(data) <= limit:
        return data, "png"
    for quality in (90, 80, 70, 60):
        data = encode(image, "JPEG", quality)
        if len(data) <= limit:
            return data, "jpg"
    while True:
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
        data = encode(image, "JPEG", 80)
        if len(data) <= limit:
            return data, "jpg"

files, out_dir, limit = [Path(p) for p in sys.argv[3:]], Path(sys.argv[1]), int(sys.argv[2])
sizes = []
for path in files:
    data, ext = fit(to_image(path), limit)
    (out_dir / f"{path.stem}.{ext}").write_bytes(data)
    sizes.append(len(data))
print(json.dumps({"sizes": sizes, "rss_kb": {"main": vm_hwm_kb()}}))
'''

OURS = PRELUDE + r'''
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from exporter.collections.convert import convert

def one(args):
    import os
    path, out_dir, limit = args
    result = convert(Path(path), max_bytes=limit)
    (Path(out_dir) / f"{Path(path).stem}.{result.extension}").write_bytes(result.data)
    return len(result.data), os.getpid(), vm_hwm_kb()

out_dir, limit, workers, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
peaks, sizes = {}, []
with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
    for size, pid, peak in pool.map(one, [(f, out_dir, limit) for f in files], chunksize=1):
        sizes.append(size)
        peaks[pid] = max(peak, peaks.get(pid, 0))
peaks["main"] = vm_hwm_kb()
print(json.dumps({"sizes": sizes, "rss_kb": peaks}))
'''


def make_fits(folder: Path, count: int, side: int) -> list[Path]:
    from astropy.io import fits

    rng = np.random.default_rng(12)
    base = rng.normal(1000.0, 25.0, (side, side)).astype(np.float32)
    for y, x in rng.integers(10, side - 10, (side // 8, 2)):
        base[y - 3 : y + 4, x - 3 : x + 4] += rng.uniform(200, 20000)
    base[side // 3 : side // 3 + side // 16, side // 2 : side // 2 + side // 16] = np.nan
    paths = []
    for i in range(count):
        header = fits.Header([("OBJECT", f"field {i}"), ("RA", 150.1 + i), ("DEC", 2.2), ("EXPTIME", 30.0)])
        path = folder / f"sky{i:03d}.fits"
        fits.PrimaryHDU(np.roll(base, i * 97, axis=1), header=header).writeto(path)
        paths.append(path)
    return paths


def make_tiff(folder: Path, count: int, side: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(13)
    ramp = np.linspace(300, 3800, side, dtype=np.float32)
    base = (ramp[None, :] + rng.normal(0, 60, (side, side)).astype(np.float32)).clip(0, 4095).astype(np.uint16)
    paths = []
    for i in range(count):
        path = folder / f"scan{i:03d}.tif"
        Image.fromarray(np.roll(base, i * 97, axis=0)).save(path)
        paths.append(path)
    return paths


def run(script: str, out_dir: Path, args: list[str], files: list[Path]) -> tuple[float, dict]:
    out_dir.mkdir()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, str(out_dir), str(LIMIT), *args, *map(str, files)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its pool, once reaped
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode:
        sys.exit(f"child failed:\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["sizes"]) == len(files) and max(report["sizes"]) <= LIMIT, report["sizes"]
    report["cpu"] = cpu
    return seconds, report


def rss_line(rss_kb: dict) -> str:
    workers = [kb for pid, kb in rss_kb.items() if pid != "main"]
    if not workers:
        return f"peak RSS {rss_kb['main'] / 1024:.0f} MB"
    return (f"peak RSS {max(workers) / 1024:.0f} MB per worker, {sum(workers) / 1024:.0f} MB for "
            f"{len(workers)} workers (+{rss_kb['main'] / 1024:.0f} MB pool parent)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="images of each type (default 8)")
    parser.add_argument("--side", type=int, default=4096, help="image side in pixels (default 4096)")
    args = parser.parse_args()
    if not 1 <= args.count <= 64:
        parser.error("--count must be between 1 and 64")

    with tempfile.TemporaryDirectory(prefix="bench-collections-") as tmp:
        folder = Path(tmp)
        for kind, maker in (("FITS float32", make_fits), ("TIFF 16-bit", make_tiff)):
            t = time.perf_counter()
            source = folder / kind.split()[0].lower()
            source.mkdir()
            files = maker(source, args.count, args.side)
            mb = sum(p.stat().st_size for p in files) / 1e6
            print(f"setup: {args.count} {kind} {args.side}x{args.side} ({mb:.0f} MB) in {time.perf_counter() - t:.1f}s")
            tag = kind.split()[0].lower()
            base_s, base = run(BASELINE, folder / f"{tag}-base", [], files)
            one_s, one = run(OURS, folder / f"{tag}-one", ["1"], files)
            two_s, two = run(OURS, folder / f"{tag}-two", ["2"], files)
            n = len(files)
            for label, secs, rep in (
                ("plain script (astropy transform / numpy + Pillow, one process)", base_s, base),
                ("ours, 1 process", one_s, one),
                ("ours, pool of 2 (both cores)", two_s, two),
            ):
                print(f"{kind} {label}: {n / secs:.2f} images/s ({secs:.1f}s wall), "
                      f"{rep['cpu'] / n:.2f} CPU s/image, {rss_line(rep['rss_kb'])}, "
                      f"mean output {np.mean(rep['sizes']) / 1000:.0f} KB")
            print(f"{kind} ours on both cores vs the script: {base_s / two_s:.2f}x images/s; "
                  f"ours in one process vs the script: {base_s / one_s:.2f}x images/s, "
                  f"CPU per image script/ours {base['cpu'] / one['cpu']:.2f}x")
            for path in files:
                path.unlink()


if __name__ == "__main__":
    main()
