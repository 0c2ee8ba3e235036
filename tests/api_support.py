"""Fixtures for the JSON API tests: an app on the test context, tokens per role, and two
stand-in export kinds so the API is tested apart from (and as fast as) any real export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from exporter import access, submissions, visibility
from exporter.errors import InvalidRequest
from exporter.kinds import KINDS, JobKind

SP_A = "20000001"
SP_B = "20000002"
ESTIMATE = {"bytes": 1000}
CALLBACK_NETWORKS = "127.0.0.0/8"


def _normalize(scope_param: str):
    def normalize(params: dict[str, Any]) -> dict[str, Any]:
        out = {scope_param: params.pop(scope_param), "mode": params.pop("mode", "full"), "format": params.pop("format", "zip")}
        if params:
            raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
        if scope_param == "service_point":
            out["service_point"] = int(out["service_point"])
        return out

    return normalize


def _run(public: bool):
    def run(job) -> dict:
        job.progress(0, 2, force=True)
        job.add_artifact("archive", f"test-exports/{job.job_id}/{job.run_id}/export.{job.params['format']}", b"PK" + b"x" * 98, public=public)
        job.add_artifact("manifest", f"test-exports/{job.job_id}/{job.run_id}/manifest.json", json.dumps({"job": job.job_id}).encode(), public=public)
        job.progress(2, 2, force=True)
        return {"records": 1}

    return run


def _estimate(ctx, kind: str, params: dict[str, Any]) -> int:
    return ESTIMATE["bytes"]


FAKE_PUBLIC = JobKind(name="test_export_public", task="exporter.test_export_public", queue="exports", run=_run(True), normalize=_normalize("agency"), estimate=_estimate)
FAKE_PRIVATE = JobKind(name="test_export_private", task="exporter.test_export_private", queue="exports", run=_run(False), normalize=_normalize("service_point"), estimate=_estimate)


@pytest.fixture
def fake_exports(monkeypatch):
    """The API's public/private exports run as the stand-in kinds above."""
    monkeypatch.setitem(KINDS, FAKE_PUBLIC.name, FAKE_PUBLIC)
    monkeypatch.setitem(KINDS, FAKE_PRIVATE.name, FAKE_PRIVATE)
    monkeypatch.setitem(submissions.EXPORT_KINDS, "public", FAKE_PUBLIC.name)
    monkeypatch.setitem(submissions.EXPORT_KINDS, "private", FAKE_PRIVATE.name)
    before = set(visibility.PRIVATE_KINDS)
    visibility.PRIVATE_KINDS.add(FAKE_PRIVATE.name)
    ESTIMATE["bytes"] = 1000
    yield
    visibility.PRIVATE_KINDS.clear()
    visibility.PRIVATE_KINDS.update(before)


@dataclass
class Api:
    ctx: Any
    app: Any
    client: Any
    tokens: dict[str, str]

    def headers(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def get(self, path: str, who: str | None = "operator", **kw):
        return self.client.get("/api/v1" + path, headers=self.headers(who), **kw)

    def post(self, path: str, body: Any = None, who: str | None = "operator", **kw):
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.client.post("/api/v1" + path, headers=self.headers(who), **kw)


def make_api(ctx, **setting_overrides) -> Api:
    from web import create_app

    if setting_overrides:
        ctx.settings = ctx.settings.replace(**setting_overrides)
    app = create_app(ctx)
    app.testing = True
    tokens = {}
    for who, role, sp in (("operator", "operator", None), ("reader", "read_only", None), ("sp_a", "service_point", SP_A), ("sp_b", "service_point", SP_B)):
        tokens[who] = access.create_token(ctx, role, service_point_id=sp, name=who)[1]
    return Api(ctx=ctx, app=app, client=app.test_client(), tokens=tokens)


@pytest.fixture
def api(ctx, fake_exports):
    """The app on each database backend, with tokens: operator, reader, sp_a, sp_b."""
    from exporter.config import as_networks

    return make_api(ctx, webhook_allow_networks=as_networks("WEBHOOK_ALLOW_NETWORKS", CALLBACK_NETWORKS), api_rate_limit=access_rate(1000))


def access_rate(n: int, seconds: float = 3600):
    from exporter.ratelimit import Rate

    return Rate(n, seconds)


PUBLIC = {"kind": "public", "scope": {"agency": "https://ror.org/038sjwq14"}}
PRIVATE_A = {"kind": "private", "scope": {"servicePoint": int(SP_A)}}
PRIVATE_B = {"kind": "private", "scope": {"servicePoint": int(SP_B)}}
