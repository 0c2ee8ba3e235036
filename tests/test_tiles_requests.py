"""What the tiles routes will call: request normalisation, MapColonies' cache cover rule and
expiry push, joining a running request, admission (507), and their response and callback shapes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from exporter import cleanup, jobs, runner, submissions, webhooks
from exporter.admission import InsufficientStorage
from exporter.db import utcnow
from exporter.errors import InvalidRequest
from exporter.models import Job
from exporter.tiles import grid, layers, mapcolonies
from exporter.tiles.requests import covers, normalize_tiles_request
from tests.tiles_fixtures import box_roi, roi_tiles, write_tiles

Z11, Z6 = grid.resolution(11), grid.resolution(6)
BIG = box_roi(34.5, 31.5, 35.5, 32.5, Z11, Z6)


@pytest.fixture
def layer(ctx, tmp_path):
    write_tiles(tmp_path / "tiles", roi_tiles(BIG))
    return layers.add_layer(ctx, "hills", folder=str(tmp_path / "tiles"), max_zoom=12, record_id="ef03ca54-c68e-4ca8-8432-50ae5ad7a7f8")


def finished(ctx, roi=BIG, **kw) -> Job:
    sub = submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": roi}, ctx), **kw)
    assert sub.outcome == "created"
    assert runner.run_job(ctx, sub.job.id) == "succeeded"
    return jobs.get(ctx, sub.job.id)


def test_the_request_body_ours_or_mapcolonies(ctx, layer):
    ours = normalize_tiles_request({"layer": "hills", "roi": BIG, "description": "x", "callbackURLs": []}, ctx)
    theirs = normalize_tiles_request({"dbId": layer.record_id, "roi": BIG, "crs": "EPSG:4326", "priority": 0}, ctx)
    assert ours == theirs
    assert (ours["layer"], ours["recordCatalogId"], ours["minZoom"], ours["maxZoom"]) == ("hills", layer.record_id, 6, 11)
    assert ours["tileCount"] == len(roi_tiles(BIG)) and ours["bbox"] == [34.5, 31.5, 35.5, 32.5]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"roi": BIG}, "layer"),
        ({"layer": "nope", "roi": BIG}, "layer"),
        ({"dbId": "nope", "roi": BIG}, "dbId"),
        ({"layer": "hills"}, "roi"),
        ({"layer": "hills", "roi": BIG, "crs": "EPSG:3857"}, "crs"),
        ({"layer": "hills", "roi": BIG, "extra": 1}, "extra"),
        ({"layer": "hills", "roi": box_roi(34.5, 31.5, 35.5, 32.5, grid.resolution(13))}, "roi.features[0].properties.maxResolutionDeg"),
    ],
)
def test_bad_requests_name_the_field(ctx, layer, body, field):
    with pytest.raises(InvalidRequest) as caught:
        normalize_tiles_request(body, ctx)
    assert caught.value.field == field


def test_a_region_over_the_tile_limit_is_refused(ctx, layer):
    ctx.settings = ctx.settings.replace(tiles_max_tiles=50)
    with pytest.raises(InvalidRequest, match="more than 50 tiles") as caught:
        normalize_tiles_request({"layer": "hills", "roi": BIG}, ctx)
    assert caught.value.field == "roi.features[0]"
    small = box_roi(34.5, 31.5, 34.6, 31.6, grid.resolution(6), grid.resolution(6))["features"]
    two = {"type": "FeatureCollection", "features": small + BIG["features"]}  # the feature that makes it too big is named
    with pytest.raises(InvalidRequest, match=r"feature 1 covers the most \(more than 50\)") as caught:
        normalize_tiles_request({"layer": "hills", "roi": two}, ctx)
    assert caught.value.field == "roi.features[1]"


def test_cover_rule_buffer_area_ratio_and_same_resolutions():
    assert covers(BIG, box_roi(34.55, 31.55, 35.45, 32.45, Z11, Z6), 5, 0.8)  # inside, 81% of the area
    assert not covers(BIG, box_roi(34.6, 31.6, 35.4, 32.4, Z11, Z6), 5, 0.8)  # inside, but 64%: too small
    assert not covers(BIG, box_roi(34.5, 31.5, 35.5, 32.5, grid.resolution(10), Z6), 5, 0.8)  # other zoom range
    assert covers(BIG, box_roi(34.50003, 31.49997, 35.50003, 32.5, Z11, Z6), 5, 0.8)  # 3 m outside: the buffer
    assert not covers(BIG, box_roi(34.5005, 31.5, 35.5005, 32.5, Z11, Z6), 5, 0.8)  # 55 m outside


def test_a_covered_request_is_answered_from_cache_with_its_expiry_pushed_forward(ctx, layer):
    old = finished(ctx)
    with ctx.db.session() as s:  # finished an hour ago, expiring in a day
        s.execute(update(Job).where(Job.id == old.id).values(finished_at=utcnow() - timedelta(hours=1), expires_at=utcnow() + timedelta(days=1)))
    inner = box_roi(34.55, 31.55, 35.45, 32.45, Z11, Z6)
    sub = submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": inner}, ctx))
    assert (sub.outcome, sub.job.id) == ("cached", old.id)
    pushed = jobs.get(ctx, old.id).expires_at
    assert pushed > utcnow() + timedelta(seconds=ctx.settings.job_expiry_seconds - 60)

    small = box_roi(34.7, 31.7, 35.3, 32.3, Z11, Z6)
    assert submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": small}, ctx)).outcome == "created"
    coarser = box_roi(34.55, 31.55, 35.45, 32.45, grid.resolution(10), Z6)
    assert submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": coarser}, ctx)).outcome == "created"


def test_no_cache_hit_from_a_result_too_old_or_expired(ctx, layer):
    old = finished(ctx)
    inner = normalize_tiles_request({"layer": "hills", "roi": box_roi(34.55, 31.55, 35.45, 32.45, Z11, Z6)}, ctx)
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == old.id).values(finished_at=utcnow() - timedelta(seconds=ctx.settings.cache_max_age_seconds + 5)))
    assert submissions.request_job(ctx, "tiles", inner).outcome == "created"
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.kind == "tiles").values(status="succeeded", finished_at=utcnow(), expires_at=utcnow() - timedelta(seconds=1)))
    assert submissions.request_job(ctx, "tiles", dict(inner, bbox=inner["bbox"])).outcome == "created"


def test_cleanup_never_deletes_what_a_hit_just_extended(ctx, layer):
    old = finished(ctx)
    read = utcnow() - timedelta(seconds=1)
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == old.id).values(expires_at=read + timedelta(seconds=2)))
    due = utcnow() + timedelta(seconds=5)
    expires = jobs.get(ctx, old.id).expires_at
    hit = submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": BIG}, ctx))
    assert (hit.outcome, hit.job.id) == ("cached", old.id)
    assert cleanup.expire(ctx, old.id, expires, due) is None  # its compare-and-set on the old expiry loses
    assert jobs.get(ctx, old.id).status == "succeeded"


def test_an_identical_running_request_is_joined_and_its_callbacks_merged(ctx, layer):
    params = normalize_tiles_request({"layer": "hills", "roi": BIG}, ctx)
    first = submissions.request_job(ctx, "tiles", params, callback_urls=["http://93.184.216.34/a"])
    again = submissions.request_job(ctx, "tiles", params, callback_urls=["http://93.184.216.34/b", "http://93.184.216.34/a"])
    assert (again.outcome, again.job.id) == ("joined", first.job.id)
    assert webhooks.callbacks_of(ctx, first.job.id) == ["http://93.184.216.34/a", "http://93.184.216.34/b"]
    assert mapcolonies.create_response(ctx, again) == {"jobId": first.job.id, "taskIds": [first.job.id], "status": "In-Progress", "isDuplicated": True}
    assert mapcolonies.create_response(ctx, first)["isDuplicated"] is False


def test_admission_refuses_what_would_not_fit(ctx, layer):
    params = normalize_tiles_request({"layer": "hills", "roi": BIG}, ctx)
    need = params["tileCount"] * layers.DEFAULT_TILE_BYTES["png"]
    ctx.settings = ctx.settings.replace(storage_quota_bytes=need - 1)
    with pytest.raises(InsufficientStorage) as caught:
        submissions.request_job(ctx, "tiles", params)
    assert caught.value.needed == need
    ctx.settings = ctx.settings.replace(storage_quota_bytes=need + 1)
    assert submissions.request_job(ctx, "tiles", params).outcome == "created"


def test_completed_and_failed_shapes_and_the_callback_payload(ctx, layer):
    done = finished(ctx, description="This is an export task description")
    with ctx.db.session() as s:
        job = s.get(Job, done.id)
        body = webhooks.payload(ctx, job, "succeeded")
        assert body == mapcolonies.completed_response(ctx, job) | {"links": body["links"]}
    assert body["status"] == "Completed" and body["errorReason"] == ""
    assert set(body["links"]) == {"dataURI", "metadataURI"} and all("/api/v1/exports/" in u for u in body["links"].values())
    assert "artifact=data" in body["links"]["dataURI"] and "artifact=manifest" in body["links"]["metadataURI"]
    assert body["fileSize"] == next(a.size for a in done.artifacts if a.name == "data")
    assert body["recordCatalogId"] == layer.record_id and body["roi"] == done.params["roi"] and body["jobId"] == done.id
    assert body["description"] == "This is an export task description" and body["expirationTime"].endswith("Z")
    assert mapcolonies.task_status(done) == {"percentage": 100, "status": "Completed"}
    cached = submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "hills", "roi": BIG}, ctx))
    assert mapcolonies.create_response(ctx, cached)["status"] == "Completed"

    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == done.id).values(status="failed", error="tile 6/1/2: refused"))
        failed = s.get(Job, done.id)
        shape = webhooks.payload(ctx, failed, "failed")
    assert shape["status"] == "Failed" and shape["errorReason"] == "tile 6/1/2: refused" and shape["links"] is None
