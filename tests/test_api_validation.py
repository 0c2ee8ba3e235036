"""Every bad request gets a 4xx with a JSON error naming the field; none gives a 5xx."""

# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
from __future__ import annotations

import pytest

from exporter.models import Job

from .api_support import PUBLIC, api, fake_exports  # noqa: F401


@pytest.mark.parametrize(
    "raw, status, field, words",
    [
        (b'{"kind": "public", "scope": ', 400, "body", "not valid JSON"),
        (b"", 400, "body", "JSON object"),
        (b"[1, 2]", 400, "body", "JSON object"),
        (b'"public"', 400, "body", "JSON object"),
        (b"\xff\xfe{}", 400, "body", "not valid JSON"),
        (b'{"kind": "public", "scope": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400, "body", "nested too deeply"),  # under the 64 KB limit
        (b'{"kind": "secret", "scope": {"agency": "a"}}', 400, "kind", "public, private"),
        (b'{"scope": {"agency": "a"}}', 400, "kind", "required"),
        (b'{"kind": "public"}', 400, "scope", "scope is required"),
        (b'{"kind": "public", "scope": "everything"}', 400, "scope", "scope is required"),
        (b'{"kind": "public", "scope": {}}', 400, "scope.agency", "needs scope.agency"),
        (b'{"kind": "public", "scope": {"servicePoint": 1}}', 400, "scope.servicePoint", "takes only agency"),
        (b'{"kind": "public", "scope": {"agency": ""}}', 400, "scope.agency", "non-empty"),
        (b'{"kind": "public", "scope": {"agency": true}}', 400, "scope.agency", "string or a whole number"),
        (b'{"kind": "private", "scope": {"servicePoint": 1.5}}', 400, "scope.servicePoint", "string or a whole number"),
        (b'{"kind": "private", "scope": {"servicePoint": 99999999999999999999999}}', 400, "scope.servicePoint", "between"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "mode": "partial"}', 400, "mode", "full, incremental"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "format": "rar"}', 400, "format", "zip, tar.gz"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "description": 5}', 400, "description", "string"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "description": "a\\u0000b"}', 400, "description", "control"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "colour": "red"}', 400, "colour", "unknown field"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "callbackURLs": "http://x"}', 400, "callbackURLs", "list of strings"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "callbackURLs": ["ftp://example.org/x"]}', 400, "callbackURLs", "http or https"),
        (b'{"kind": "public", "scope": {"agency": "a"}, "callbackURLs": ["http://10.0.0.1/hook"]}', 400, "callbackURLs", ""),
        (b'{"kind": "public", "scope": {"agency": "a"}, "callbackURLs": ["not a url"]}', 400, "callbackURLs", ""),
    ],
)
def test_bad_export_requests_name_the_field(api, raw, status, field, words):
    r = api.post("/exports", data=raw, content_type="application/json")
    assert r.status_code == status, r.json
    assert r.is_json and r.json["field"] == field and words in r.json["error"]
    with api.ctx.db.session() as s:
        assert s.query(Job).count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "urls"),
        ({"urls": [], "portal": "x"}, "urls"),
        ({"urls": []}, "urls"),
        ({"urls": "https://example.org"}, "urls"),
        ({"urls": ["https://example.org/a", "mailto:me@example.org"]}, "urls[1]"),
        ({"urls": ["https://"]}, "urls[0]"),
        ({"urls": ["http://example.org:99999/"]}, "urls[0]"),
        ({"portal": ""}, "portal"),
        ({"portal": None}, "portal"),
        ({"urls": ["https://example.org/a"], "speed": "max"}, "speed"),
    ],
)
def test_bad_archive_requests_name_the_field(api, body, field):
    r = api.post("/archives", body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field


def test_oversized_body_is_a_json_413(api):
    api.ctx.settings = api.ctx.settings.replace(api_max_body_bytes=1000)
    r = api.post("/exports", {**PUBLIC, "description": "x" * 2000})
    assert r.status_code == 413
    assert r.json == {"error": "the request body is too large: at most 1000 bytes are accepted", "field": "body"}


def test_unknown_paths_and_methods_are_json_under_the_api_only(api):
    r = api.get("/nothing-here")
    assert r.status_code == 404 and r.is_json and "openapi.json" in r.json["error"]
    r = api.client.delete("/api/v1/exports", headers=api.headers("operator"))
    assert r.status_code == 405 and r.is_json and "GET" in r.headers["Allow"]
    r = api.client.put("/api/v1/storage")
    assert r.status_code == 405 and r.json["field"] is None
    outside = api.client.get("/no-such-page")
    assert outside.status_code == 404 and not outside.is_json


@pytest.mark.parametrize(
    "path, field",
    [
        ("/exports?limit=0", "limit"),
        ("/exports?limit=many", "limit"),
        ("/exports?offset=-1", "offset"),
        ("/exports?kind=secret", "kind"),
        ("/audit?jobId=a%00b", "jobId"),
        ("/reports/broken-links?format=xml", "format"),
    ],
)
def test_bad_query_parameters_name_the_field(api, path, field):
    r = api.get(path)
    assert r.status_code == 400 and r.json["field"] == field


def test_odd_ids_are_not_found_not_errors(api):
    for path in ("/exports/%00", "/exports/" + "a" * 65, "/exports/..%2F..", "/archives/x%20y", "/resources/%C3%A9"):
        r = api.get(path)
        assert r.status_code == 404 and r.is_json, path


def test_description_and_identifiers_round_trip_unicode(api):
    r = api.post("/exports", {"kind": "public", "scope": {"agency": "ünï-ag"}, "description": "Ωμέγα ✓"})
    assert r.status_code == 201
    assert api.get(f"/exports/{r.json['jobId']}").json["description"] == "Ωμέγα ✓"


@pytest.mark.parametrize(
    "path, field, words",
    [
        ("/storage?verbose=1", "verbose", "this endpoint takes: none"),
        ("/exports/abc?x=1", "x", "this endpoint takes: none"),
        ("/exports?colour=red&limit=2", "colour", "this endpoint takes: kind, limit, offset, status"),
        ("/audit?job_id=a", "job_id", "takes: action, jobId, limit, offset"),
    ],
)
def test_unknown_query_parameters_are_refused_by_name(api, path, field, words):
    r = api.get(path)
    assert r.status_code == 400 and r.json["field"] == field and words in r.json["error"], r.json


def test_an_empty_query_value_is_no_value_for_text_but_not_for_numbers_or_choices(api):
    assert api.get("/audit?jobId=&action=").status_code == 200
    assert api.get("/reports/broken-links?organization=").status_code == 200
    assert api.get("/exports?limit=").json["field"] == "limit"
    assert api.get("/exports?status=").json["field"] == "status"


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({**PUBLIC, "scope": {"agency": "a", "region": "x"}}, "scope.region", "allowed: agency, servicePoint"),
        ({**PUBLIC, "callbackURLs": ["https://example.org/a", 5]}, "callbackURLs[1]", "must be a string"),
        ({**PUBLIC, "callbackURLs": ["https://example.org/" + "a" * 2048]}, "callbackURLs[0]", "at most 2048"),
        ({**PUBLIC, "mode": None}, "mode", "required"),
        ({"kind": "secret", "colour": "red"}, "colour", "unknown field"),  # unknown names come first
    ],
)
def test_nested_and_list_fields_are_named_with_their_path(api, body, field, words):
    r = api.post("/exports", body)
    assert r.status_code == 400 and r.json["field"] == field and words in r.json["error"], r.json


def test_the_body_is_read_after_the_token_and_the_query_before_it(api):
    assert api.post("/exports", {"kind": "nope"}, who=None).status_code == 401
    assert api.get("/exports?colour=red", who=None).status_code == 400


def test_a_body_is_json_whatever_its_content_type(api):
    r = api.post("/exports", data=b'{"kind": "public", "scope": {"agency": "a"}}', content_type="text/plain")
    assert r.status_code == 201, r.json
