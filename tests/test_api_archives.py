# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
"""The archiver through the API: archive URLs, sweep a portal, a resource's record, broken links."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import pytest

from exporter.archiver.archive import archive_resource
from exporter.archiver.portals import add_portal
from exporter.archiver.resources import upsert_url
from exporter.archiver.sweep import resweep
from exporter.config import as_networks

from .api_support import api, fake_exports  # noqa: F401
from .conftest import free_port


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


@pytest.fixture
def broken_url(api):
    """A URL on a closed local port, archived once: a broken link with a record."""
    api.ctx.settings = api.ctx.settings.replace(archiver_allow_networks=as_networks("ARCHIVER_ALLOW_NETWORKS", "127.0.0.0/8"), archiver_retry_backoff_ms=0)
    url = f"http://127.0.0.1:{free_port()}/data/table.csv"
    rid = upsert_url(api.ctx, url)
    archive_resource(api.ctx, rid)
    return url, rid


def test_archive_urls_makes_a_job_on_the_archive_queue_and_joins_equal_ones(api):
    urls = ["https://data.example.org/a.csv", "https://data.example.org/b.csv"]
    r = api.post("/archives", {"urls": urls, "description": "two tables"})
    assert r.status_code == 201, r.json
    job_id = r.json["jobId"]
    assert r.json["kind"] == "urls" and r.json["isDuplicated"] is False
    assert api.ctx.sent == [("exporter.archive_urls", job_id, "archive")]
    again = api.post("/archives", {"urls": urls})
    assert again.status_code == 200 and again.json["jobId"] == job_id and again.json["isDuplicated"] is True
    body = api.get(f"/archives/{job_id}").json
    assert body["status"] == "pending" and body["description"] == "two tables" and body["result"] is None
    assert api.get(f"/exports/{job_id}").status_code == 404
    assert api.get(f"/archives/{job_id}", who="sp_a").status_code == 404
    from exporter import access

    assert access.list_audit(api.ctx, job_id=job_id)[0].action == "archive.create"


def test_sweeping_a_portal_needs_a_registered_one(api):
    r = api.post("/archives", {"portal": "nowhere"})
    assert r.status_code == 404 and r.json["field"] == "portal" and "nowhere" in r.json["error"]
    portal = add_portal(api.ctx, "demo", "https://ckan.example.org")
    r = api.post("/archives", {"portal": "demo"})
    assert r.status_code == 201 and r.json["kind"] == "portal"
    by_id = api.post("/archives", {"portal": portal.id})
    assert by_id.status_code == 200 and by_id.json["jobId"] == r.json["jobId"]  # name or id: one sweep
    assert api.ctx.sent[0][0] == "exporter.sweep_portal"
    # The scheduled re-sweep names the portal the same way, so it joins instead of starting another.
    assert resweep(api.ctx)["already_running"] == ["demo"]


def test_resource_record_and_broken_links_report(api, broken_url):
    url, rid = broken_url
    record = api.get(f"/resources/{rid}", who="reader")
    assert record.status_code == 200
    assert record.json["resource"]["url"] == url and record.json["archival"]["is_broken"] is True
    assert api.get("/resources/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get(f"/resources/{rid}", who="sp_a").status_code == 403

    report = api.get("/reports/broken-links").json
    assert report["totals"]["broken"] == 1
    [row] = report["organizations"][0]["rows"]
    assert row["url"] == url and row["resource_id"] == rid
    assert api.get("/reports/broken-links?organization=someone-else").json["totals"]["broken"] == 0

    r = api.get("/reports/broken-links?format=csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    [line] = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert line["url"] == url and line["status_id"] == str(row["status_id"])


def test_a_resources_cache_url_redirects_to_its_stored_copy(api, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"a,b\n1,2\n")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api.ctx.settings = api.ctx.settings.replace(archiver_allow_networks=as_networks("ARCHIVER_ALLOW_NETWORKS", "127.0.0.0/8"))
        rid = upsert_url(api.ctx, f"http://127.0.0.1:{server.server_port}/t.csv")
        record = archive_resource(api.ctx, rid)
    finally:
        server.shutdown()
    cache_url = record["archival"]["cache_url"]
    assert cache_url.endswith(f"/api/v1/resources/{rid}/download")
    r = api.client.get(_path(cache_url))
    assert r.status_code == 302, r.json
    assert api.client.get(_path(r.headers["Location"])).data == b"a,b\n1,2\n"
    from exporter import access

    assert access.list_audit(api.ctx, action="resource.download")[0].detail == {"resource": rid}
    assert api.get("/resources/00000000-0000-0000-0000-000000000000/download", who=None).status_code == 404


def test_a_resource_without_a_stored_copy_has_nothing_to_download(api, broken_url):
    _, rid = broken_url
    r = api.get(f"/resources/{rid}/download", who=None)
    assert r.status_code == 404 and "no stored copy" in r.json["error"]
