"""Tiles exports in-process: a local folder layer and an HTTP layer on nginx, checked with GDAL's
validator and gdalinfo; missing tiles; resuming; the metadata sidecar."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from exporter import jobs, runner, submissions
from exporter.errors import TransientError
from exporter.tiles import export, grid, layers
from exporter.tiles import sources as tile_sources
from exporter.tiles.gpkg import APPLICATION_ID
from tests.archiver_fixtures import actx, nginx  # noqa: F401
from tests.tiles_fixtures import box_roi, gdalinfo, png, roi_tiles, tile_seed, validate_gpkg, write_tiles

ROI = box_roi(34.5, 31.55, 35.5, 32.45, grid.resolution(11), grid.resolution(6))  # zoom 6-11, 150-200 tiles


def export_tiles(ctx, layer: str, roi: dict = ROI, **kw):
    sub = submissions.request_job(ctx, "tiles", {"layer": layer, "roi": roi}, requested_by="test", **kw)
    assert sub.outcome == "created"
    status = runner.run_job(ctx, sub.job.id)
    return status, jobs.get(ctx, sub.job.id)


def local_path(ctx, job, name: str) -> Path:
    art = next(a for a in job.artifacts if a.name == name)
    return ctx.storage.path(art.key)


@pytest.fixture
def folder_layer(ctx, tmp_path):
    write_tiles(tmp_path / "tiles", roi_tiles(ROI))
    layers.add_layer(ctx, "folder", folder=str(tmp_path / "tiles"), max_zoom=12)
    return tmp_path / "tiles"


def test_a_folder_layer_becomes_a_valid_geopackage_and_its_sidecar(ctx, folder_layer):
    expected = roi_tiles(ROI)
    status, job = export_tiles(ctx, "folder", description="Jerusalem hills")
    assert status == "succeeded", job.error
    assert job.percentage == 100 and job.progress_done == len(expected)
    path = local_path(ctx, job, "data")
    assert validate_gpkg(path) == []
    info = gdalinfo(path)
    assert "Driver: GPKG/GeoPackage" in info and 'ID["EPSG",4326]' in info

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert {r[0] for r in db.execute("SELECT srs_id FROM gpkg_spatial_ref_sys")} == {-1, 0, 4326}
    (table, kind, *bounds) = db.execute("SELECT table_name, data_type, min_x, min_y, max_x, max_y FROM gpkg_contents").fetchone()
    assert kind == "tiles" and bounds == [34.5, 31.55, 35.5, 32.45]
    assert db.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_tile_matrix_set").fetchone() == (-180, -90, 180, 90)
    matrix = db.execute("SELECT zoom_level, matrix_width, matrix_height, pixel_x_size FROM gpkg_tile_matrix ORDER BY 1").fetchall()
    assert matrix == [(z, 2 ** (z + 1), 2**z, grid.resolution(z)) for z in range(6, 12)]
    rows = db.execute(f'SELECT zoom_level, tile_column, tile_row, tile_data FROM "{table}"').fetchall()
    assert sorted((z, c, r) for z, c, r, _ in rows) == sorted(expected)
    assert all(data == png(tile_seed(z, c, r)) for z, c, r, data in rows)  # row 0 at the top, as written
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'exporter_%'").fetchone()[0] == 0
    db.close()

    meta = json.loads(local_path(ctx, job, "manifest").read_text())
    data = next(a for a in job.artifacts if a.name == "data")
    assert (meta["sha256"], meta["fileSize"]) == (data.sha256, data.size)
    assert meta["footprint"] == ROI and meta["boundingBox"] == [34.5, 31.55, 35.5, 32.45]
    assert meta["zoom"] == {"min": 6, "max": 11} and [r["zoom"] for r in meta["resolutions"]] == [6, 7, 8, 9, 10, 11]
    assert (meta["tileCount"], meta["tilesWritten"], meta["missingTiles"]["count"]) == (len(expected), len(expected), 0)
    assert meta["layer"] == "folder" and meta["description"] == "Jerusalem hills" and meta["expiration"]
    assert not export.work_dir(ctx.settings, job.id).exists()
    layer = layers.get_layer(ctx, "folder")
    assert layer.tiles_measured == len(expected) and layer.average_tile_bytes == round(sum(len(d) for *_, d in rows) / len(rows))


def test_an_http_layer_through_nginx_with_tms_rows_and_missing_tiles(actx, nginx, tmp_path):  # noqa: F811
    ctx = actx
    expected = roi_tiles(ROI)
    gone = set(expected[::25])
    root = nginx.root / f"tms-{uuid.uuid4().hex[:8]}"
    write_tiles(root, expected, tms=True, skip=gone)
    layers.add_layer(ctx, "remote", url_template=f"{nginx.url}/{root.name}/{{z}}/{{x}}/{{-y}}.png", max_zoom=12)
    status, job = export_tiles(ctx, "remote")
    assert status == "succeeded", job.error
    assert (job.result["written"], job.result["missing"]) == (len(expected) - len(gone), len(gone))
    path = local_path(ctx, job, "data")
    assert validate_gpkg(path) == []
    with closing(sqlite3.connect(path)) as db:
        got = db.execute('SELECT zoom_level, tile_column, tile_row, tile_data FROM "remote"').fetchall()
    assert sorted((z, c, r) for z, c, r, _ in got) == sorted(set(expected) - gone)
    assert all(data == png(tile_seed(z, c, r)) for z, c, r, data in got)
    meta = json.loads(local_path(ctx, job, "manifest").read_text())
    assert meta["missingTiles"]["count"] == len(gone)
    assert sorted(tuple(t[:3]) for t in meta["missingTiles"]["listed"]) == sorted(gone)
    assert {t[3] for t in meta["missingTiles"]["listed"]} == {"HTTP 404"}
    requested = [line for line in nginx.access_log() if f"/{root.name}/" in line]
    assert len(requested) == len(expected)  # each tile asked for once


def test_too_many_missing_tiles_fail_the_export_and_publish_nothing(ctx, tmp_path):
    expected = roi_tiles(ROI)
    write_tiles(tmp_path / "sparse", expected[: len(expected) // 2])
    layers.add_layer(ctx, "sparse", folder=str(tmp_path / "sparse"), max_zoom=12)
    status, job = export_tiles(ctx, "sparse")
    assert status == "failed" and "TILES_MAX_MISSING_PERCENT=10" in job.error
    assert job.artifacts == [] and list(ctx.storage.list("tiles/")) == []
    assert not export.work_dir(ctx.settings, job.id).exists()


def test_a_run_cut_short_resumes_without_reading_a_tile_twice(ctx, folder_layer, monkeypatch):
    ctx.settings = ctx.settings.replace(tiles_commit_every=10)
    reads: list[tuple[int, int, int]] = []
    real = tile_sources.FolderSource.session
    cut = {"after": 45}

    def counting(self):
        with real(self) as read:

            def wrapped(z, c, r):
                if cut["after"] is not None and len(reads) >= cut["after"]:
                    raise TransientError("the source went away")
                reads.append((z, c, r))
                return read(z, c, r)

            yield wrapped

    monkeypatch.setattr(tile_sources.FolderSource, "session", contextmanager(counting))
    sub = submissions.request_job(ctx, "tiles", {"layer": "folder", "roi": ROI})
    with pytest.raises(TransientError):
        runner.run_job(ctx, sub.job.id)
    mid = jobs.get(ctx, sub.job.id)
    assert mid.status == "pending" and list(ctx.storage.list("tiles/")) == []
    with closing(sqlite3.connect(export.work_dir(ctx.settings, sub.job.id) / "tiles.gpkg")) as db:
        kept = db.execute('SELECT count(*) FROM "folder"').fetchone()[0]
    assert 40 <= kept <= 45  # committed every 10 tiles; the last batch may be lost

    cut["after"] = None
    assert runner.run_job(ctx, sub.job.id) == "succeeded"
    done = jobs.get(ctx, sub.job.id)
    expected = roi_tiles(ROI)
    assert done.result["resumed_from"] == kept and done.result["written"] == len(expected)
    assert len(reads) - len(set(reads)) == 45 - kept  # only the uncommitted batch was read again
    with closing(sqlite3.connect(local_path(ctx, done, "data"))) as db:
        assert db.execute('SELECT count(*), count(DISTINCT zoom_level || "/" || tile_column || "/" || tile_row) FROM "folder"').fetchone() == (len(expected), len(expected))
