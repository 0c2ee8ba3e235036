"""The `tiles` job: every tile of a region of interest into one GeoPackage, plus a metadata sidecar.

The GeoPackage is built in a local work folder keyed by the job id
(TILES_WORK_DIR/<job id>/), committed every TILES_COMMIT_EVERY tiles. A run that finds a
partial file there (the worker was killed, or a transient error sent the job back) skips
every tile already written or recorded missing, so nothing is fetched twice. The finished
file is streamed to storage as a staged artifact and published by the runner only when the
job succeeds: the published GeoPackage is complete or absent. The work folder goes when the
job ends (and stale ones of ended jobs when the next tiles run starts on this host).
"""

from __future__ import annotations

import fcntl
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..db import utcnow
from ..errors import ExporterError, TransientError
from ..expiry import expires_at
from ..models import ACTIVE_STATUSES, Job
from ..runner import JobRun
from . import grid, layers
from .gpkg import GeoPackageWriter
from .roi import Roi, iter_tiles, parse_roi
from .sources import Tile, open_source

log = logging.getLogger(__name__)

KIND = "tiles"
FINISHED = "finished.json"
MISSING_LISTED = 1000  # missing tiles named in the sidecar; the count is always whole
CONTENT_TYPE = "application/geopackage+sqlite3"
COMMIT_SECONDS = 1.0


def work_dir(settings, job_id: str) -> Path:
    return Path(settings.tiles_work_dir) / job_id


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold the work folder's lock: one run of a job on this host writes its file at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TransientError(f"another run of this job on this host still holds {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prune_work_dirs(ctx, older_than_seconds: float = 3600) -> int:
    """Remove work folders of jobs that are no longer pending or running (this host's leftovers)."""
    root = Path(ctx.settings.tiles_work_dir)
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    folders = [p for p in root.iterdir() if p.is_dir() and p.stat().st_mtime < cutoff]
    if not folders:
        return 0
    with ctx.db.session() as s:
        active = set(s.scalars(select(Job.id).where(Job.id.in_([p.name for p in folders]), Job.status.in_(ACTIVE_STATUSES))))
    removed = 0
    for p in folders:
        if p.name not in active:
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


def table_name(layer: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in layer) or "tiles"


def file_stem(params: dict[str, Any], job: JobRun) -> str:
    return f"{params['layer']}_z{params['minZoom']}-{params['maxZoom']}_{job.timestamp}"


def pending_tiles(roi: Roi, writer: GeoPackageWriter, resumed: bool) -> Iterator[tuple[int, int, int]]:
    done, seen = (), None
    for zoom, column, rows in iter_tiles(roi):
        if resumed and seen != (zoom, column):  # a long column comes in several runs: read its done rows once
            done, seen = writer.done_rows(zoom, column), (zoom, column)
        for row in rows.tolist():
            if row not in done:
                yield zoom, column, row


class Fetchers:
    """`threads` threads reading tiles from the source; results come back on `out`."""

    def __init__(self, source, threads: int):
        self.source = source
        self.inbox: queue.Queue = queue.Queue()
        self.out: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"tiles-fetch-{n}") for n in range(threads)]
        self.stopping = threading.Event()
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        try:
            with self.source.session() as read:
                while not self.stopping.is_set():
                    item = self.inbox.get()
                    if item is None:
                        return
                    self.out.put(read(*item))
        except BaseException as exc:  # handed to the writer thread, which raises it
            self.out.put(exc)

    def stop(self) -> None:
        self.stopping.set()
        for _ in self.threads:
            self.inbox.put(None)
        for t in self.threads:
            t.join(timeout=60)


def write_tiles(job: JobRun, roi: Roi, writer: GeoPackageWriter, total: int, done: int, missing: int) -> tuple[int, int]:
    """Fetch every tile not yet in the file and write it; returns (done, missing) at the end."""
    s = job.settings
    source = open_source(job.ctx, layers.get_layer(job.ctx, job.params["layer"]))
    threads = max(1, source.threads)
    fetchers = Fetchers(source, threads)
    window = threads * 8
    allowed_missing = total * s.tiles_max_missing_percent / 100
    tiles = pending_tiles(roi, writer, resumed=done > 0)
    inflight, exhausted = 0, False
    batch, last_commit = 0, time.monotonic()
    try:
        while True:
            while not exhausted and inflight < window:
                item = next(tiles, None)
                if item is None:
                    exhausted = True
                    break
                fetchers.inbox.put(item)
                inflight += 1
            if inflight == 0:
                break
            got = fetchers.out.get()
            inflight -= 1
            if isinstance(got, BaseException):
                raise got
            tile: Tile = got
            if tile.data is None:
                writer.missing(tile.zoom, tile.column, tile.row, tile.reason or "missing")
                missing += 1
                if missing > allowed_missing:
                    raise ExporterError(f"{missing} of {total} tiles are missing at the source (more than TILES_MAX_MISSING_PERCENT={s.tiles_max_missing_percent}%); last: {tile.zoom}/{tile.column}/{tile.row}: {tile.reason}")
            else:
                writer.add(tile.zoom, tile.column, tile.row, tile.data)
            done += 1
            batch += 1
            if batch >= s.tiles_commit_every or time.monotonic() - last_commit > COMMIT_SECONDS:
                writer.commit()
                batch, last_commit = 0, time.monotonic()
                job.progress(done, total)
        writer.commit()
    finally:
        fetchers.stop()
    job.progress(done, total, force=True)
    return done, missing


def _sidecar(job: JobRun, params: dict[str, Any], roi: Roi, stats: dict[str, Any], gpkg: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    expiry = expires_at(job.settings, KIND, None, now)
    zooms = range(params["minZoom"], params["maxZoom"] + 1)
    west, south, east, north = params["bbox"]
    return {
        "layer": params["layer"],
        "recordCatalogId": params.get("recordCatalogId"),
        "jobId": job.job_id,
        "description": job.job.description,
        "footprint": roi.feature_collection(),
        "boundingBox": params["bbox"],
        "productBoundingBox": f"{west},{south},{east},{north}",
        "crs": "EPSG:4326",
        "tilingScheme": grid.TILING_SCHEME,
        "tileFormat": stats["format"],
        "zoom": {"min": params["minZoom"], "max": params["maxZoom"]},
        "resolutions": [{"zoom": z, "resolutionDeg": grid.resolution(z)} for z in zooms],
        "maxResolutionDeg": grid.resolution(params["maxZoom"]),
        "tileCount": params["tileCount"],
        "tilesWritten": stats["written"],
        "missingTiles": {"count": stats["missing"], "listed": stats["missing_listed"], "truncated": stats["missing"] > len(stats["missing_listed"])},
        "fileName": gpkg["filename"],
        "fileSize": gpkg["size"],
        "sha256": gpkg["sha256"],
        "created": now.isoformat().replace("+00:00", "Z"),
        "expiration": expiry.isoformat().replace("+00:00", "Z") if expiry else None,
    }


def _build(job: JobRun, params: dict[str, Any], roi: Roi, folder: Path) -> dict[str, Any]:
    """Make (or finish) the work GeoPackage; returns its stats, kept in FINISHED once done."""
    finished = folder / FINISHED
    if finished.exists():
        job.log.info("job %s: the GeoPackage was already complete in %s; publishing it", job.job_id, folder)
        return json.loads(finished.read_text())
    layer = layers.get_layer(job.ctx, params["layer"])
    total = int(params["tileCount"])
    writer = GeoPackageWriter(folder / "tiles.gpkg", table_name(params["layer"]), params["minZoom"], params["maxZoom"], identifier=params["layer"], description=job.job.description or "")
    try:
        written, _, missing = writer.counts()
        resumed = written + missing
        if resumed:
            job.log.info("job %s: resuming: %d of %d tiles already done", job.job_id, resumed, total)
        job.progress(resumed, total, force=True)
        done, missing = write_tiles(job, roi, writer, total, resumed, missing)
        written, size, missing = writer.counts()
        if written + missing != total:
            raise ExporterError(f"the GeoPackage has {written} tiles and {missing} missing, but the region covers {total}")
        listed = writer.missing_tiles(MISSING_LISTED)
        writer.finish(tuple(params["bbox"]))
    except BaseException:
        writer.close()
        raise
    stats = {"written": written, "bytes": size, "missing": missing, "missing_listed": listed, "resumed_from": resumed, "format": layer.format}
    finished.write_text(json.dumps(stats))
    return stats


def _upload(job: JobRun, path: Path, key: str, filename: str) -> dict[str, Any]:
    with job.artifact("data", key, filename=filename, content_type=CONTENT_TYPE) as fh, open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            fh.write(chunk)
    info = fh.info
    return {"filename": filename, "size": info.size, "sha256": info.sha256}


def run(job: JobRun) -> dict[str, Any]:
    params = job.params
    folder = work_dir(job.settings, job.job_id)
    try:
        prune_work_dirs(job.ctx)
    except Exception:
        log.exception("job %s: could not prune old tile work folders", job.job_id)
    job.on_outcome(lambda status, error, result: _ended(job, folder, status, result))
    layer = layers.get_layer(job.ctx, params["layer"])
    roi = parse_roi(params["roi"], layer.max_zoom)
    with exclusive(folder):
        stats = _build(job, params, roi, folder)
        stem = file_stem(params, job)
        prefix = f"tiles/{params['layer']}/{job.timestamp}-{job.job_id[:8]}-{job.run_id}"
        gpkg = _upload(job, folder / "tiles.gpkg", f"{prefix}/{stem}.gpkg", f"{stem}.gpkg")
        sidecar = _sidecar(job, params, roi, stats, gpkg)
        job.add_artifact("manifest", f"{prefix}/{stem}.json", json.dumps(sidecar, indent=2).encode(), filename=f"{stem}.json", content_type="application/json")
    return {
        "layer": params["layer"],
        "tiles": params["tileCount"],
        "written": stats["written"],
        "missing": stats["missing"],
        "tile_bytes": stats["bytes"],
        "resumed_from": stats["resumed_from"],
        "zoom": [params["minZoom"], params["maxZoom"]],
        "file_size": gpkg["size"],
        "sha256": gpkg["sha256"],
    }


def _ended(job: JobRun, folder: Path, status: str, result: dict[str, Any] | None) -> None:
    """After the job's end is committed: measure the layer, and drop the work folder unless
    the job may still run again (lost to the reaper, not cancelled)."""
    if status == "succeeded" and result:
        layers.measure(job.ctx, job.params["layer"], int(result.get("written") or 0), int(result.get("tile_bytes") or 0))
    if status == "lost":
        with job.ctx.db.session() as s:
            current = s.get(Job, job.job_id)
            if current is not None and current.status in ACTIVE_STATUSES:
                return
    shutil.rmtree(folder, ignore_errors=True)
