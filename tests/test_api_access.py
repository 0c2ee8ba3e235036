"""Who may see and do what through the API: roles, service-point isolation, downloads, audit."""

# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlencode, urlsplit

import itsdangerous
import pytest

from exporter import access, cleanup, runner

from .api_support import PRIVATE_A, PRIVATE_B, PUBLIC, SP_A, api, fake_exports  # noqa: F401


def _finished(api, body, who="operator"):
    job_id = api.post("/exports", body, who=who).json["jobId"]
    assert runner.run_job(api.ctx, job_id) == "succeeded"
    return job_id


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


@pytest.mark.parametrize("path", ["/exports", "/storage", "/exports/x", "/audit"])
def test_reads_need_a_valid_token(api, path):
    r = api.get(path, who=None)
    assert r.status_code == 401 and r.json["field"] == "Authorization" and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = api.client.get("/api/v1" + path, headers={"Authorization": "Bearer exp_not-a-real-token"})
    assert r.status_code == 401 and "not valid" in r.json["error"]
    r = api.client.get("/api/v1" + path, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401


def test_a_revoked_token_stops_working_at_once(api):
    assert api.get("/exports", who="reader").status_code == 200
    reader = next(t for t in access.list_tokens(api.ctx) if t.name == "reader")
    access.revoke_token(api.ctx, reader.id)
    assert api.get("/exports", who="reader").status_code == 401


def test_read_only_reads_but_creates_and_cancels_nothing(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    assert api.get(f"/exports/{job_id}", who="reader").status_code == 200
    r = api.post("/exports", PUBLIC, who="reader")
    assert r.status_code == 403 and "read_only" in r.json["error"]
    assert api.post(f"/exports/{job_id}/cancel", who="reader").status_code == 403
    assert api.post("/archives", {"urls": ["https://example.org/a.csv"]}, who="reader").status_code == 403
    private = api.post("/exports", PRIVATE_A).json["jobId"]
    assert api.get(f"/exports/{private}", who="reader").status_code == 404
    assert [j["jobId"] for j in api.get("/exports", who="reader").json["items"]] == [job_id]


def test_a_service_point_requests_only_its_own_private_export(api):
    assert api.post("/exports", PRIVATE_A, who="sp_a").status_code == 201
    r = api.post("/exports", PRIVATE_B, who="sp_a")
    assert r.status_code == 403 and r.json["field"] == "scope.servicePoint"
    r = api.post("/exports", PUBLIC, who="sp_a")
    assert r.status_code == 403 and r.json["field"] == "kind"
    assert api.post("/archives", {"urls": ["https://example.org/a.csv"]}, who="sp_a").status_code == 403


def test_another_service_points_export_is_a_404_everywhere(api):
    job_id = _finished(api, PRIVATE_A, who="sp_a")
    mine = api.get(f"/exports/{job_id}", who="sp_a")
    assert mine.status_code == 200 and mine.json["links"]["dataURI"]
    for r in (
        api.get(f"/exports/{job_id}", who="sp_b"),
        api.get(f"/exports/{job_id}/download", who="sp_b"),
        api.post(f"/exports/{job_id}/cancel", who="sp_b"),
    ):
        assert r.status_code == 404, r.json
        assert r.json["error"] == f"no export {job_id}"
    assert api.get("/exports", who="sp_b").json["items"] == []
    assert [j["jobId"] for j in api.get("/exports", who="sp_a").json["items"]] == [job_id]
    assert api.get("/exports", who="operator").json["total"] == 1


def test_service_point_list_matches_numeric_and_string_ids(api):
    api.post("/exports", {"kind": "private", "scope": {"servicePoint": SP_A}})
    api.post("/exports", PRIVATE_B)
    assert api.get("/exports", who="sp_a").json["total"] == 1
    assert api.get("/exports?kind=public", who="sp_a").json["total"] == 0


def test_private_download_needs_the_owner_or_operator_and_is_audited(api):
    job_id = _finished(api, PRIVATE_A, who="sp_a")
    r = api.get(f"/exports/{job_id}/download", who=None)
    assert r.status_code == 401
    for who in ("sp_a", "operator"):
        r = api.get(f"/exports/{job_id}/download", who=who)
        assert r.status_code == 302, r.json
        assert "/files/test-exports/" in r.headers["Location"] and "signature=" in r.headers["Location"]
    r = api.get(f"/exports/{job_id}/download?artifact=manifest", who="sp_a")
    assert r.status_code == 302 and "manifest.json" in r.headers["Location"]
    assert api.client.get(_path(r.headers["Location"])).json == {"job": job_id}
    rows = access.list_audit(api.ctx, job_id=job_id, action="export.download")
    assert [(row.detail["artifact"], row.role) for row in rows] == [("manifest", "service_point"), ("archive", "operator"), ("archive", "service_point")]
    assert all(row.ip == "127.0.0.1" and row.target.startswith("test-exports/") for row in rows)


def test_public_download_needs_no_token(api):
    job_id = _finished(api, PUBLIC)
    r = api.get(f"/exports/{job_id}/download", who=None)
    assert r.status_code == 302
    assert api.client.get(_path(r.headers["Location"])).data.startswith(b"PK")
    # Even another service point may fetch a public file.
    assert api.get(f"/exports/{job_id}/download", who="sp_b").status_code == 302
    [row, *_] = access.list_audit(api.ctx, job_id=job_id, action="export.download")
    assert row.actor == f"token:{row.token_id} (sp_b)"
    anonymous = access.list_audit(api.ctx, job_id=job_id, action="export.download")[-1]
    assert anonymous.actor == "anonymous" and anonymous.token_id is None and anonymous.detail["via"] == "public"


def test_signed_links_work_without_a_token_and_refuse_tampering(api):
    job_id = _finished(api, PRIVATE_A, who="sp_a")
    link = api.get(f"/exports/{job_id}", who="sp_a").json["links"]["dataURI"]
    r = api.client.get(_path(link))
    assert r.status_code == 302
    row = access.list_audit(api.ctx, job_id=job_id, action="export.download")[0]
    assert row.actor == "anonymous" and row.detail["via"].startswith("signed link issued to token:")
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    tampered = urlsplit(link).path + "?" + urlencode({**query, "artifact": "manifest"})
    r = api.client.get(tampered)
    assert r.status_code == 403 and r.json["field"] == "signature"
    old = access.signed_download_url(api.ctx, job_id, "archive", now=0)
    r = api.client.get(_path(old))
    assert r.status_code == 410 and "expired" in r.json["error"]
    # The same fields signed by SECRET_KEY another way (plain HMAC, as links were signed before
    # itsdangerous; or the storage links' salt) open nothing; nor does a signature that is not ASCII.
    message = f"download\n{job_id}\n{query['artifact']}\n{query['expires']}\n{query['by']}".encode()
    plain = hmac.new(api.ctx.settings.secret_key.encode(), message, hashlib.sha256).hexdigest()
    other_salt = itsdangerous.Signer(api.ctx.settings.secret_key, salt="exporter.storage.download", digest_method=hashlib.sha256).get_signature(message[9:]).decode()
    for signature in (plain, other_salt, "é" * 20):
        r = api.client.get(urlsplit(link).path + "?" + urlencode({**query, "signature": signature}))
        assert r.status_code == 403 and r.json["field"] == "signature", signature


def test_download_before_it_is_ready_or_after_expiry(api):
    job_id = api.post("/exports", PRIVATE_A, who="sp_a").json["jobId"]
    r = api.get(f"/exports/{job_id}/download", who="sp_a")
    assert r.status_code == 409 and "pending" in r.json["error"]
    runner.run_job(api.ctx, job_id)
    from datetime import timedelta

    from exporter.db import utcnow

    cleanup.run(api.ctx, now=utcnow() + timedelta(days=365))
    body = api.get(f"/exports/{job_id}", who="sp_a").json
    assert body["status"] == "expired" and body["links"] is None
    r = api.get(f"/exports/{job_id}/download", who="sp_a")
    assert r.status_code == 410


def test_archive_and_synthetic_jobs_are_not_exports(api):
    from exporter import jobs

    job = jobs.submit(api.ctx, "synthetic", {"size": 10})
    assert api.get(f"/exports/{job.id}").status_code == 404
    assert api.get(f"/exports/{job.id}/download", who=None).status_code == 404


def test_audit_endpoint_is_for_operators(api):
    job_id = api.post("/exports", PUBLIC).json["jobId"]
    assert api.get("/audit", who="reader").status_code == 403
    body = api.get(f"/audit?jobId={job_id}").json
    assert [e["action"] for e in body["items"]] == ["export.create"]
    assert body["items"][0]["jobId"] == job_id and body["items"][0]["role"] == "operator"
