"""POST /api/v1/publications and GET /api/v1/publications/{id}: an agency's public export to Zenodo
through the API, against the local Zenodo stand-in (tests/zenodo_fake.py)."""

from __future__ import annotations

import pytest

from exporter import runner
from tests.api_support import access_rate, make_api
from tests.raids_helpers import AGENCY, record, run_export, save
from tests.test_publish_zenodo import configure
from tests.zenodo_fake import FakeZenodo


@pytest.fixture
def fake():
    server = FakeZenodo().start()
    yield server
    server.stop()


@pytest.fixture
def api(pg_ctx, fake):
    return make_api(configure(pg_ctx, fake), api_rate_limit=access_rate(1000))


def test_publish_through_the_api_then_read_the_dois(api):
    save(api.ctx, *[record(i, access="open" if i % 3 else "closed") for i in range(1, 8)])
    export = run_export(api.ctx, "export_public", {"agency": AGENCY})
    r = api.post("/publications", {"agency": AGENCY})
    assert r.status_code == 201, r.json
    assert (r.json["status"], r.json["export_job_id"]) == ("pending", export.id)
    assert r.headers["Location"].endswith(f"/api/v1/publications/{r.json['id']}")
    assert runner.run_job(api.ctx, r.json["id"]) == "succeeded"
    shown = api.get(f"/publications/{r.json['id']}", who="reader").json
    assert shown["status"] == "published" and shown["doi"] and shown["concept_doi"] and shown["record_id"]
    assert shown["links"]["doi"] == f"https://doi.org/{shown['doi']}"
    assert {f["key"] for f in shown["files"]} >= {"raids.zip", "manifest.json", "SHA256SUMS", "ro-crate-metadata.json"}
    assert all(len(f["md5"]) == 32 for f in shown["files"])
    again = api.post("/publications", {"agency": AGENCY, "export": export.id})
    assert again.json["id"] == r.json["id"] and again.json["status"] == "published"  # the same export: the same publication
    newer = run_export(api.ctx, "export_public", {"agency": AGENCY})  # same records: nothing new to publish
    second = api.post("/publications", {"agency": AGENCY})
    assert second.json["export_job_id"] == newer.id and second.json["id"] != r.json["id"]
    assert runner.run_job(api.ctx, second.json["id"]) == "succeeded"
    assert api.get(f"/publications/{second.json['id']}").json["status"] == "unchanged"


def test_a_publication_zenodo_refused_shows_zenodos_message_as_error_reason(api, fake):
    save(api.ctx, record(1))
    run_export(api.ctx, "export_public", {"agency": AGENCY})
    fake.fail(400, "POST", "/actions/publish", body={"status": 400, "message": "A validation error occurred.", "errors": [{"field": "metadata.creators", "messages": ["Missing data for required field."]}]})
    r = api.post("/publications", {"agency": AGENCY})
    assert runner.run_job(api.ctx, r.json["id"]) == "failed"
    shown = api.get(f"/publications/{r.json['id']}", who="reader").json
    assert shown["status"] == "failed" and shown["errorReason"] == shown["error"]
    assert "Zenodo refused POST" in shown["errorReason"] and "metadata.creators: Missing data for required field." in shown["errorReason"]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 400, "agency"),
        ({"agency": AGENCY, "extra": 1}, 400, "extra"),
        ({"agency": "https://ror.org/0nosuchag"}, 404, None),
        ({"agency": AGENCY}, 404, None),  # no export of it yet
    ],
)
def test_bad_publication_requests(api, body, status, field):
    save(api.ctx, record(1))  # the agency exists, with no export
    r = api.post("/publications", body)
    assert r.status_code == status, r.json
    assert r.json["field"] == field


def test_only_operators_publish_and_unknown_ids_are_404(api):
    assert api.post("/publications", {"agency": AGENCY}, who="reader").status_code == 403
    assert api.post("/publications", {"agency": AGENCY}, who=None).status_code == 401
    assert api.get("/publications/nope").status_code == 404


def test_without_zenodo_settings_the_answer_says_what_to_set(api):
    save(api.ctx, record(1))
    run_export(api.ctx, "export_public", {"agency": AGENCY})
    api.ctx.settings = api.ctx.settings.replace(zenodo_url="")
    r = api.post("/publications", {"agency": AGENCY})
    assert r.status_code == 503 and "EXPORTER_ZENODO_URL" in r.json["error"]
