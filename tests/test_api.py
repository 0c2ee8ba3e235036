"""The JSON API's exports: create, watch, duplicates, admission, cancel, download; on both databases."""

# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import update

from exporter import access, runner, webhooks
from exporter.db import utcnow
from exporter.models import Artifact, Job

from .api_support import PRIVATE_A, PRIVATE_B, PUBLIC, SP_A, api, fake_exports, make_api  # noqa: F401

HOOK = "http://127.0.0.1:9/hook"


def test_create_export_answers_201_with_the_job_and_enqueues_it(api):
    r = api.post("/exports", {**PUBLIC, "description": "nightly", "mode": "incremental", "format": "tar.gz"})
    assert r.status_code == 201, r.json
    body = r.json
    assert body["isDuplicated"] is False
    assert body["status"] == "pending" and body["percentage"] == 0
    assert body["description"] == "nightly" and body["mode"] == "incremental" and body["format"] == "tar.gz"
    assert body["links"] is None and body["fileSize"] is None and body["errorReason"] is None
    assert r.headers["Location"].endswith(f"/api/v1/exports/{body['jobId']}")
    assert api.ctx.sent == [("exporter.test_export_public", body["jobId"], "exports")]
    [row] = access.list_audit(api.ctx, job_id=body["jobId"])
    assert (row.action, row.actor, row.role, row.detail["outcome"]) == ("export.create", f"token:{row.token_id} (operator)", "operator", "created")
    assert row.ip == "127.0.0.1"


def test_finished_export_shows_links_size_and_expiry(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    assert runner.run_job(api.ctx, job_id) == "succeeded"
    body = api.get(f"/exports/{job_id}").json
    assert body["status"] == "completed" and body["percentage"] == 100
    assert body["fileSize"] == 100
    assert body["expirationTime"] and body["finishedAt"]
    data, manifest = body["links"]["dataURI"], body["links"]["manifestURI"]
    assert f"/api/v1/exports/{job_id}/download?artifact=archive&" in data
    assert "artifact=manifest" in manifest
    # A signed link works without a token and redirects to the stored file.
    path = data.split("://", 1)[1].split("/", 1)[1]
    r = api.client.get("/" + path)
    assert r.status_code == 302, r.json
    got = api.client.get(urlsplit(r.headers["Location"]).path + "?" + urlsplit(r.headers["Location"]).query)
    assert got.status_code == 200 and got.data == b"PK" + b"x" * 98


def test_equal_pending_request_joins_the_job_and_merges_callbacks(api):
    first = api.post("/exports", {**PRIVATE_A, "callbackURLs": [HOOK + "1"]}, who="sp_a")
    assert first.status_code == 201
    # Same request, other key order, defaults spelled out, service point as a string.
    again = api.post("/exports", {"format": "zip", "mode": "full", "scope": {"servicePoint": SP_A}, "kind": "private", "callbackURLs": [HOOK + "2", HOOK + "1"]}, who="operator")
    assert again.status_code == 200
    assert again.json["jobId"] == first.json["jobId"] and again.json["isDuplicated"] is True
    assert again.json["status"] == "pending"
    assert webhooks.callbacks_of(api.ctx, first.json["jobId"]) == [HOOK + "1", HOOK + "2"]
    assert len(api.ctx.sent) == 1  # one job, one message
    other = api.post("/exports", {**PRIVATE_A, "mode": "incremental"}, who="sp_a")
    assert other.status_code == 201 and other.json["jobId"] != first.json["jobId"]


def test_equal_request_after_success_returns_it_at_once_with_expiry_unchanged(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    runner.run_job(api.ctx, job_id)
    soon = utcnow() + timedelta(seconds=api.ctx.settings.download_url_ttl + 300)  # outlives the links a hit hands out
    with api.ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(expires_at=soon))
    r = api.post("/exports", {**PUBLIC, "format": "zip"}, who="operator")
    assert r.status_code == 200
    body = r.json
    assert body["jobId"] == job_id and body["isDuplicated"] is True
    assert body["status"] == "completed" and body["links"]["dataURI"] and body["fileSize"] == 100
    # A hit never extends the result's life: cleanup's compare-and-set on expires_at stays valid.
    assert body["expirationTime"] == soon.isoformat().replace("+00:00", "Z")
    assert len(api.ctx.sent) == 1
    outcomes = [row.detail["outcome"] for row in access.list_audit(api.ctx, job_id=job_id, action="export.create")]
    assert sorted(outcomes) == ["cached", "created"]


def test_expired_or_deleted_result_is_not_reused(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    runner.run_job(api.ctx, job_id)
    with api.ctx.db.session() as s:
        s.execute(update(Artifact).where(Artifact.job_id == job_id).values(deleted_at=utcnow()))
    r = api.post("/exports", PUBLIC)
    assert r.status_code == 201 and r.json["jobId"] != job_id
    runner.run_job(api.ctx, r.json["jobId"])
    with api.ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == r.json["jobId"]).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert api.post("/exports", PUBLIC).status_code == 201


def _finished_ago(ctx, job_id: str, seconds: float) -> None:
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(seconds=seconds)))


def test_a_result_older_than_the_cache_max_age_makes_a_new_job(api):
    api.ctx.settings = api.ctx.settings.replace(cache_max_age_seconds=3600)
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    assert runner.run_job(api.ctx, job_id) == "succeeded"
    _finished_ago(api.ctx, job_id, 3500)
    assert api.post("/exports", PUBLIC).json["jobId"] == job_id  # young enough: cached
    _finished_ago(api.ctx, job_id, 3601)
    r = api.post("/exports", PUBLIC)
    assert r.status_code == 201 and r.json["jobId"] != job_id and r.json["isDuplicated"] is False
    assert len(api.ctx.sent) == 2
    # The old result is still served by its own id until it expires.
    assert api.get(f"/exports/{job_id}").json["status"] == "completed"


def test_a_per_kind_cache_max_age_overrides_the_default(api):
    from exporter.expiry import as_kind_seconds

    api.ctx.settings = api.ctx.settings.replace(cache_max_age_seconds=0, kind_cache_max_age=as_kind_seconds("KIND_CACHE_MAX_AGE", "test_export_public=60"))
    pub = api.post("/exports", PUBLIC).json["jobId"]
    priv = api.post("/exports", PRIVATE_A).json["jobId"]
    for job_id in (pub, priv):
        assert runner.run_job(api.ctx, job_id) == "succeeded"
        _finished_ago(api.ctx, job_id, 120)
    assert api.post("/exports", PUBLIC).json["jobId"] != pub
    assert api.post("/exports", PRIVATE_A).json["jobId"] == priv  # 0: reused until it expires


def test_an_incremental_request_is_never_answered_from_cache(api):
    body = {**PUBLIC, "mode": "incremental"}
    first = api.post("/exports", body).json["jobId"]
    joined = api.post("/exports", body)
    assert joined.status_code == 200 and joined.json["jobId"] == first  # an active one is joined
    assert runner.run_job(api.ctx, first) == "succeeded"
    again = api.post("/exports", body)
    assert again.status_code == 201 and again.json["jobId"] != first and again.json["isDuplicated"] is False
    assert [row.detail["outcome"] for row in access.list_audit(api.ctx, action="export.create")].count("cached") == 0


def test_failed_and_cancelled_jobs_are_not_joined(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    assert api.post(f"/exports/{job_id}/cancel").json["status"] == "cancelled"
    assert api.post("/exports", PUBLIC).json["jobId"] != job_id


def test_admission_refuses_an_export_that_cannot_fit(api, monkeypatch):
    from .api_support import ESTIMATE

    api.ctx.settings = api.ctx.settings.replace(storage_quota_bytes=10_000)
    ESTIMATE["bytes"] = 6_000
    first = api.post("/exports", PUBLIC)
    assert first.status_code == 201
    # 10 000 free, but the pending export still expects to write 6 000.
    r = api.post("/exports", PRIVATE_A)
    assert r.status_code == 507
    assert "not enough storage" in r.json["error"] and "5.9 KiB" in r.json["error"] and "running jobs" in r.json["error"]
    assert api.get("/storage").json == {"free": 10_000, "total": 10_000, "size": 10_000, "used": 0, "reserved": 6_000}
    # Half done: half of its estimate is still reserved.
    with api.ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == first.json["jobId"]).values(progress_done=1, progress_total=2))
    ESTIMATE["bytes"] = 7_000
    assert api.post("/exports", PRIVATE_A).status_code == 201
    assert len(api.ctx.sent) == 2


def test_storage_endpoint_reports_the_disk_without_a_quota(api):
    body = api.get("/storage").json
    assert body["free"] > 0 and body["total"] >= body["free"] and body["used"] == 0


def test_job_creation_is_rate_limited_per_token(ctx, fake_exports):
    from .api_support import access_rate

    api = make_api(ctx, api_rate_limit=access_rate(2, 3600))
    assert api.post("/exports", PUBLIC).status_code == 201
    assert api.post("/exports", PRIVATE_A).status_code == 201
    r = api.post("/exports", PRIVATE_B)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 1800
    assert "too many" in r.json["error"]
    # Another token has its own bucket.
    assert api.post("/exports", PRIVATE_A, who="sp_a").status_code == 200


def test_cancel_pending_then_conflict(api):
    job_id = api.post("/exports", PRIVATE_A, who="sp_a").json["jobId"]
    r = api.post(f"/exports/{job_id}/cancel", who="sp_a")
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    again = api.post(f"/exports/{job_id}/cancel", who="sp_a")
    assert again.status_code == 409 and again.json["field"] == "status"
    assert [a.action for a in access.list_audit(api.ctx, job_id=job_id)] == ["export.cancel", "export.create"]


def test_failed_export_shows_its_reason(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    with api.ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="failed", error="RuntimeError: disk on fire"))
    body = api.get(f"/exports/{job_id}").json
    assert body["status"] == "failed" and body["errorReason"] == "RuntimeError: disk on fire" and body["links"] is None


def test_list_filters_and_pages(api):
    ids = [api.post("/exports", {**PUBLIC, "scope": {"agency": f"ag{i}"}}).json["jobId"] for i in range(3)]
    api.post("/exports", PRIVATE_A)
    runner.run_job(api.ctx, ids[0])
    page = api.get("/exports?kind=public&limit=2").json
    assert page["total"] == 3 and page["limit"] == 2 and len(page["items"]) == 2
    rest = api.get("/exports?kind=public&limit=2&offset=2").json
    assert {j["jobId"] for j in page["items"] + rest["items"]} == set(ids)
    done = api.get("/exports?status=completed").json
    assert [j["jobId"] for j in done["items"]] == [ids[0]]
    assert api.get("/exports").json["total"] == 4
    assert api.get("/exports?status=bogus").status_code == 400
