"""The API on the real RAiD export kinds (issue 3): request, run, links, download, admission, S3 storage."""

from __future__ import annotations

from urllib.parse import urlsplit

from exporter import jobs, runner, webhooks
from exporter.config import as_networks
from exporter.raids.generator import generate
from exporter.ratelimit import Rate

from .api_support import SP_A, SP_B, make_api

AGENCY = "https://ror.org/038sjwq14"


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def test_public_and_private_exports_end_to_end(ctx):
    api = make_api(ctx, api_rate_limit=Rate(0, 1))
    generate(ctx, 8, agency=AGENCY, service_points=[int(SP_A), int(SP_B)], seed=3)

    public = api.post("/exports", {"kind": "public", "scope": {"agency": AGENCY}, "description": "agency dump"})
    assert public.status_code == 201, public.json
    private = api.post("/exports", {"kind": "private", "scope": {"servicePoint": SP_A}, "format": "tar.gz"}, who="sp_a")
    assert private.status_code == 201, private.json
    assert {(task, queue) for task, _, queue in ctx.sent} == {("exporter.export_public", "exports"), ("exporter.export_private", "exports")}
    for r in (public, private):
        assert runner.run_job(ctx, r.json["jobId"]) == "succeeded"

    body = api.get(f"/exports/{public.json['jobId']}", who="reader").json
    assert body["status"] == "completed" and body["kind"] == "public" and body["fileSize"] > 0
    assert "artifact=archive" in body["links"]["dataURI"] and "artifact=manifest" in body["links"]["manifestURI"]
    # Public files need no token; the redirect leads to the bytes.
    r = api.client.get(f"/api/v1/exports/{public.json['jobId']}/download")
    assert r.status_code == 302
    assert len(api.client.get(_path(r.headers["Location"])).data) == body["fileSize"]
    manifest = api.client.get(_path(api.client.get(_path(body["links"]["manifestURI"])).headers["Location"])).json
    assert manifest  # the export's manifest, served as JSON

    mine = api.get(f"/exports/{private.json['jobId']}", who="sp_a").json
    assert mine["kind"] == "private" and mine["format"] == "tar.gz" and mine["links"]["dataURI"]
    assert api.get(f"/exports/{private.json['jobId']}", who="sp_b").status_code == 404
    assert api.client.get(f"/api/v1/exports/{private.json['jobId']}/download").status_code == 401
    assert api.get(f"/exports/{private.json['jobId']}/download", who="sp_a").status_code == 302

    # The same request again: the finished export, at once.
    again = api.post("/exports", {"scope": {"servicePoint": int(SP_A)}, "kind": "private", "format": "tar.gz", "mode": "full"}, who="sp_a")
    assert again.status_code == 200 and again.json["isDuplicated"] and again.json["status"] == "completed"
    assert again.json["jobId"] == private.json["jobId"]


def test_unknown_agency_or_service_point_is_a_404_naming_it(ctx):
    api = make_api(ctx)
    generate(ctx, 2, agency=AGENCY, service_points=[int(SP_A)], seed=4)
    # The domain's checks answer with the request's field names (scope.agency, not the job's `agency`).
    r = api.post("/exports", {"kind": "public", "scope": {"agency": "https://ror.org/000000000"}})
    assert r.status_code == 404 and "000000000" in r.json["error"] and r.json["field"] == "scope.agency"
    r = api.post("/exports", {"kind": "public", "scope": {"agency": "not a ror"}})
    assert r.status_code == 400 and r.json["field"] == "scope.agency"
    r = api.post("/exports", {"kind": "private", "scope": {"servicePoint": 12345}})
    assert r.status_code == 404 and r.json == {"error": "no service point 12345", "field": "scope.servicePoint"}
    r = api.post("/exports", {"kind": "private", "scope": {"servicePoint": "not-a-number"}})
    assert r.status_code == 400 and r.json["field"] == "scope.servicePoint"
    assert r.json["error"] == "scope.servicePoint must be a service point's id, a positive number such as 20000000, got 'not-a-number'"
    r = api.post("/exports", {"kind": "tiles", "layer": "nope", "roi": {"type": "FeatureCollection", "features": []}})
    assert r.status_code == 400 and r.json["field"] == "layer" and "no tile layer 'nope'" in r.json["error"]
    assert jobs.list_jobs(ctx) == []


def test_admission_uses_the_export_size_estimate(ctx):
    api = make_api(ctx, storage_quota_bytes=1000)
    generate(ctx, 30, agency=AGENCY, service_points=[int(SP_A)], seed=5)
    r = api.post("/exports", {"kind": "public", "scope": {"agency": AGENCY}})
    assert r.status_code == 507, r.json
    assert "not enough storage for this export" in r.json["error"] and "1000 bytes" in r.json["error"]
    assert jobs.list_jobs(ctx) == []


def test_storage_on_s3_reports_the_quota_minus_what_is_kept(pg_ctx, s3_settings):
    pg_ctx.settings = s3_settings.replace(database_url=pg_ctx.settings.database_url)
    api = make_api(pg_ctx)
    assert api.get("/storage").json == {"free": None, "total": None, "size": None, "used": 0, "reserved": 0}
    runner.run_job(pg_ctx, jobs.submit(pg_ctx, "synthetic", {"size": 300}).id)
    pg_ctx.settings = pg_ctx.settings.replace(storage_quota_bytes=10_000)
    assert api.get("/storage").json == {"free": 9_700, "total": 10_000, "size": 10_000, "used": 300, "reserved": 0}


def test_callbacks_added_to_a_finished_job_are_told_at_once(ctx):
    api = make_api(ctx, webhook_allow_networks=as_networks("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8"))
    generate(ctx, 3, agency=AGENCY, service_points=[int(SP_A)], seed=6)
    job_id = api.post("/exports", {"kind": "private", "scope": {"servicePoint": SP_A}}, who="sp_a").json["jobId"]
    runner.run_job(ctx, job_id)
    r = api.post("/exports", {"kind": "private", "scope": {"servicePoint": SP_A}, "callbackURLs": ["http://127.0.0.1:9/done"]}, who="sp_a")
    assert r.status_code == 200 and r.json["status"] == "completed"
    [note] = webhooks.notifications_of(ctx, job_id)
    assert (note.url, note.event) == ("http://127.0.0.1:9/done", "succeeded")
    assert any(task == webhooks.TASK for task, _, _ in ctx.sent)
