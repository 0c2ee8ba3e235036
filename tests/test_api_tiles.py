"""The tiles export through the API: `POST /api/v1/exports` with kind tiles, and MapColonies'
own routes (`POST /create/roi`, `GET /taskStatus/{jobId}`), with their shapes, cache, errors and 507."""

from __future__ import annotations

import sqlite3

import pytest

from exporter import runner
from exporter.tiles import grid, layers
from tests.api_support import access_rate, make_api
from tests.tiles_fixtures import box_roi, roi_tiles, write_tiles

Z11, Z6 = grid.resolution(11), grid.resolution(6)
ROI = box_roi(34.5, 31.5, 35.5, 32.5, Z11, Z6)
INSIDE = box_roi(34.6, 31.6, 35.4, 32.4, Z11, Z6)  # covered by ROI, area ratio 0.64: not served from it
NEARLY = box_roi(34.51, 31.51, 35.49, 32.49, Z11, Z6)  # covered, ratio ~0.96: served from cache
RECORD = "ef03ca54-c68e-4ca8-8432-50ae5ad7a7f8"


@pytest.fixture
def api(ctx, tmp_path):
    write_tiles(tmp_path / "tiles", roi_tiles(ROI))
    layers.add_layer(ctx, "hills", folder=str(tmp_path / "tiles"), max_zoom=12, record_id=RECORD)
    return make_api(ctx, api_rate_limit=access_rate(1000))


def test_a_tiles_export_through_the_exports_endpoint(api, tmp_path):
    r = api.post("/exports", {"kind": "tiles", "layer": "hills", "roi": ROI, "description": "hills"})
    assert r.status_code == 201, r.json
    job = r.json
    assert (job["kind"], job["status"], job["isDuplicated"]) == ("tiles", "pending", False)
    assert runner.run_job(api.ctx, job["jobId"]) == "succeeded"
    done = api.get(f"/exports/{job['jobId']}").json
    assert done["status"] == "completed" and done["percentage"] == 100 and done["fileSize"] > 0
    gpkg = api.client.get(done["links"]["dataURI"].replace(api.ctx.settings.public_url, ""))
    assert gpkg.status_code == 302, gpkg.json
    stored = api.ctx.storage.read_bytes(_key_of(gpkg.headers["Location"]))
    path = tmp_path / "out.gpkg"
    path.write_bytes(stored)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
        [table] = db.execute("SELECT table_name FROM gpkg_contents WHERE data_type = 'tiles'").fetchone()
        assert db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == len(roi_tiles(ROI))
    again = api.post("/exports", {"kind": "tiles", "layer": "hills", "roi": ROI})
    assert again.status_code == 200 and again.json["isDuplicated"] and again.json["jobId"] == job["jobId"]


def _key_of(location: str) -> str:
    """The storage key a local signed download URL names."""
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(location).path).removeprefix("/files/")


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"kind": "tiles", "roi": ROI}, 400, "layer"),
        ({"kind": "tiles", "layer": "hills"}, 400, "roi"),
        ({"kind": "tiles", "layer": "hills", "roi": ROI, "scope": {"agency": "x"}}, 400, "scope"),
        ({"kind": "public", "scope": {"agency": "x"}, "layer": "hills"}, 400, "layer"),
        ({"kind": "tiles", "layer": "hills", "roi": box_roi(34.5, 31.5, 35.5, 32.5, grid.resolution(13))}, 400, "roi.features[0].properties.maxResolutionDeg"),
        ({"kind": "tiles", "layer": "hills", "roi": {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"maxResolutionDeg": Z11}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}]}}, 400, "roi.features[0].geometry"),
        ({"kind": "tiles", "layer": "nope", "roi": ROI}, 400, "layer"),  # not a registered layer
    ],
)
def test_bad_tiles_requests_are_4xx_naming_the_field(api, body, status, field):
    r = api.post("/exports", body)
    assert r.status_code == status, r.json
    assert r.json["field"] == field, r.json


def test_only_an_operator_asks_for_tiles(api):
    assert api.post("/exports", {"kind": "tiles", "layer": "hills", "roi": ROI}, who="sp_a").status_code == 403
    assert api.post("/create/roi", {"dbId": RECORD, "roi": ROI}, who="reader").status_code == 403


def test_mapcolonies_routes_in_progress_joined_completed_and_cached(api):
    first = api.post("/create/roi", {"dbId": RECORD, "roi": ROI, "crs": "EPSG:4326", "priority": 0, "description": "theirs"})
    assert first.status_code == 200, first.json
    assert (first.json["status"], first.json["isDuplicated"], first.json["taskIds"]) == ("In-Progress", False, [first.json["jobId"]])
    job_id = first.json["jobId"]
    joined = api.post("/create/roi", {"dbId": RECORD, "roi": ROI})
    assert (joined.json["jobId"], joined.json["isDuplicated"]) == (job_id, True)
    assert api.get(f"/taskStatus/{job_id}").json == {"percentage": 0, "status": "Pending"}  # their task status until a worker takes it
    assert runner.run_job(api.ctx, job_id) == "succeeded"
    assert api.get(f"/taskStatus/{job_id}").json == {"percentage": 100, "status": "Completed"}
    shown = api.get(f"/create/roi/{job_id}").json
    assert shown["status"] == "Completed" and shown["recordCatalogId"] == RECORD and shown["fileSize"] > 0
    assert shown["links"]["dataURI"] and shown["links"]["metadataURI"] and shown["expirationTime"].endswith("Z")
    cached = api.post("/create/roi", {"dbId": RECORD, "roi": NEARLY})
    assert (cached.json["status"], cached.json["jobId"]) == ("Completed", job_id)  # a covering export answers it
    smaller = api.post("/create/roi", {"dbId": RECORD, "roi": INSIDE})
    assert smaller.json["status"] == "In-Progress" and smaller.json["jobId"] != job_id  # much smaller: a new export


def test_a_tiles_export_that_would_not_fit_is_a_507(api):
    api.ctx.settings = api.ctx.settings.replace(storage_quota_bytes=1000)  # far less than tile count x average tile size
    for body in ({"dbId": RECORD, "roi": ROI}, None):
        r = api.post("/create/roi", body) if body else api.post("/exports", {"kind": "tiles", "layer": "hills", "roi": ROI})
        assert r.status_code == 507, r.json
        assert "available" in r.json["error"]


def test_task_status_of_another_kind_or_unknown_job_is_a_404(api):
    assert api.get("/taskStatus/no-such-job").status_code == 404
    assert api.get("/create/roi/no-such-job").status_code == 404


def test_storage_answers_mapcolonies_storage_response(api):
    body = api.get("/storage").json  # their StorageResponse: free and size, in bytes
    assert body["size"] == body["total"] and body["size"] >= body["free"] > 0


def test_an_unknown_db_id_is_a_404_and_task_statuses_are_theirs(api):
    r = api.post("/create/roi", {"dbId": "0b6f0b34-1111-4c8a-8432-50ae5ad7a7f8", "roi": ROI})
    assert (r.status_code, r.json["field"]) == (404, "dbId"), r.json
    job_id = api.post("/create/roi", {"dbId": RECORD, "roi": ROI}).json["jobId"]
    assert api.post(f"/exports/{job_id}/cancel").status_code == 200
    assert api.get(f"/taskStatus/{job_id}").json == {"percentage": 0, "status": "Aborted"}
