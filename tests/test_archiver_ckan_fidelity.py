# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""CKAN fidelity: every situation ckanext-archiver's own tests cover, with the status id and
reason form it records, next to ours (the table the README's archiver section refers to).

Each row: (ckanext-archiver test, how the resource answers, our status id, our reason as a
regular expression, whether that is CKAN's exact form). The server is ScenarioServer's
`/ckan` path, which takes the query flags of ckanext-archiver's mock_remote_server.
Where Exporter deliberately differs, the row says so and the README lists it.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote_plus

import pytest

from exporter.archiver.archive import archive_resource
from tests.archiver_fixtures import ARCHIVER_TEST_SETTINGS, server  # noqa: F401
from tests.conftest import free_port

MAX = 1_000_000  # ckanext-archiver.max_content_length in their tests
SAME = "CKAN's form"
LINK_CHECKED = r"Link checked \(link-check-only mode\): reachable, nothing stored"

CASES = [
    # TestArchiver / TestLinkChecker: URLs that are not fetched at all
    ("test_file_url", "file:///home/root/test.txt", 10, r"Invalid url scheme\. Please use one of: http https", "CKAN's form; CKAN also fetches ftp"),
    ("test_bad_url", "http:host.com", 10, r"URL parsing failure - did not find a host name", SAME),
    ("test_empty_url", "", 10, r"Invalid url scheme\. Please use one of: http https", SAME),
    # HTTP error statuses
    ("test_url_with_404 / test_file_not_found", "{s}/ckan?status=404&content=test&content-type=csv", 12, r"Server reported status error: 404 Not Found", SAME),
    ("test_url_with_405", "{s}/ckan?status=405", 12, r"Server reported status error: 405 Method Not Allowed", SAME),
    ("test_server_error", "{s}/ckan?status=500&content=test&content-type=csv", 12, r"Server reported status error: 500 Internal Server Error", "CKAN's form, after 3 attempts (CKAN tries once)"),
    ("test_url_with_503", "{s}/ckan?status=503", 12, r"Server reported status error: 503 Service Unavailable", "CKAN's form, after 3 attempts (CKAN tries once)"),
    # bodies
    ("test_update_with_zero_length", "{s}/ckan?status=200&content-type=csv", 12, r"Content-length after streaming was 0", SAME),
    ("test_resource_hash_and_content_length / test_archived_file / test_download_file", "{s}/ckan?status=200&content=test&content-type=csv", 0, None, "CKAN's form; a changed body later is a new version (tests/test_archiver.py::test_changed_file_is_stored_as_a_new_version)"),
    ("test_update_url_with_unknown_content_type", "{s}/ckan?content-type=application/foo&content=test", 0, None, SAME),
    ("test_wms_error (an API's error report in a 200)", "{s}/ckan?status=200&content-type=text/xml&content=" + quote_plus('<?xml version="1.0"?><ServiceExceptionReport version="1.3.0"><ServiceException>Unknown service requested.</ServiceException></ServiceExceptionReport>'), 12, r"Server content contained an API error message: <\?xml.*ServiceExceptionReport.*", SAME),
    # lying, repeated and missing Content-Length; too large
    ("test_file_too_large_1", "{s}/ckan?status=200&content=short&length=1000001&content-type=csv", 21, r"Content-length 1000001 exceeds maximum allowed value 1000000", SAME),
    ("test_file_too_large_2", "{s}/ckan?status=200&content_long=1000050&no-content-length&content-type=csv", 21, r"Content-length \d{7} exceeds maximum allowed value 1000000", "CKAN's form; the length is where reading stopped"),
    ("test_content_length_not_integer", "{s}/ckan?status=200&content=content&length=abc&content-type=csv", 0, None, SAME),
    ("test_content_length_repeated", "{s}/ckan?status=200&content=content&repeat-length&content-type=csv", 0, None, SAME),
    ("lying Content-Length (declares 10, sends 100)", "{s}/lie?declared=10&actual=100", 0, None, "requests reads what was declared; stored as sent"),
    # redirects and URL shapes browsers accept
    ("test_good_url (link check)", "{s}/ckan?status=200", 0, LINK_CHECKED, "Exporter's words for a link check; CKAN's link checker returns the headers"),
    ("test_url_with_30x_follows_redirect (link check)", "{s}/ckan?status=301&location=" + quote_plus("{s}/ckan?status=200&content=test&content-type=text/csv"), 0, LINK_CHECKED, "as above"),
    ("test_url_with_30x_follows_and_records_redirect", "{s}/ckan?status=301&location=" + quote_plus("{s}/ckan?status=200&content=test&content-type=text/csv"), 0, None, SAME),
    ("test_colon_in_query_string", "{s}/ckan?time=09:30&status=200&content=ok", 0, None, SAME),
    ("test_trailing_whitespace", "{s}/ckan?status=200&content=ok ", 0, None, SAME),
    ("test_non_escaped_url", "{s}/ckan/+/http://www.homeoffice.gov.uk/publications/x?view=Binary&content=ok", 0, None, SAME),
    ("test_head_unsupported (HEAD refused, GET works)", "{s}/ckan?status=200&method=get&content=test&content-type=csv", 0, None, SAME),
    # requests_wrapper's errors
    ("timeouts (requests_wrapper)", "{s}/hang?delay=3", 12, r"Connection timed out after 1s", "CKAN's form, after 3 attempts"),
    ("connection errors (requests_wrapper)", "http://127.0.0.1:{closed}/data.csv", 12, r"Connection error: .*", "CKAN's form, after 3 attempts"),
    ("too many redirects (requests_wrapper)", "{s}/redirect?n=9", 12, r"Too many redirects", SAME),
    # CKAN retries a failed download as an OGC API (WMS 1.3, WMS 1.1.1, WFS GetCapabilities) and
    # stores the capabilities (status 0, request_type "WMS 1.3"); Exporter does not (the README lists it)
    ("test_wms_1_3 / test_wms_1_1_1 / test_wfs (an empty 200 at a WMS or WFS URL)", "{s}/ckan/WMS_1_3/?status=200", 12, r"Content-length after streaming was 0", "Exporter: no try-as-API; CKAN records 0 with the capabilities"),
    # where Exporter adds a rule of its own (the README lists these)
    ("not data: a web page (Exporter)", "{s}/html", 21, r"Content type text/html is a web page, not data: recorded, not stored", "Exporter: CKAN stores web pages"),
    ("internal address (Exporter's SSRF guard)", "http://169.254.169.254/latest/meta-data/", 10, r".*169\.254\.169\.254.*", "Exporter: CKAN fetches it"),
]


@pytest.fixture
def fctx(pg_ctx):
    pg_ctx.settings = pg_ctx.settings.replace(**{**ARCHIVER_TEST_SETTINGS, "archiver_max_bytes": MAX})  # loopback allowed, nothing else
    return pg_ctx


@pytest.mark.parametrize(("case", "url", "status_id", "reason", "note"), CASES, ids=[c[0] for c in CASES])
def test_ckanext_archiver_case(fctx, server, case, url, status_id, reason, note):  # noqa: F811
    url = url.replace(quote_plus("{s}"), quote_plus(server.url)).replace("{s}", server.url).replace("{closed}", str(free_port()))
    link_check = "(link check)" in case
    rec = archive_resource(fctx, _portal_resource(fctx, url, link_check))["archival"]
    assert rec["status_id"] == status_id, (case, rec["status_id"], rec["reason"])
    if reason is None:
        assert rec["reason"] is None and rec["cache_key"], (case, rec)
    else:
        assert re.fullmatch(reason, rec["reason"] or "", re.S), (case, rec["reason"])
        assert rec["cache_key"] is None, case  # nothing is kept of a failed, refused or link-checked download
    if "30x" in case:
        assert rec["url_redirected_to"] == f"{server.url}/ckan?status=200&content=test&content-type=text/csv"
    if case.startswith("test_resource_hash"):
        assert rec["size"] == 4 and rec["sha256"] == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    if case.startswith("test_update_url_with_unknown"):
        assert rec["mimetype"] == "application/foo"


def _portal_resource(ctx, url: str, link_check: bool) -> str:
    """A resource as a portal lists it: any string as its URL (ad-hoc URLs are refused when added)."""
    from exporter.archiver.models import Resource
    from exporter.db import utcnow

    rid = str(uuid.uuid4())
    with ctx.db.session() as s:
        s.add(Resource(id=rid, url=url, name="fidelity", link_check_only=link_check, created_at=utcnow(), updated_at=utcnow()))
    return rid


# Their cases that are not about a URL's outcome, and why they have no row.
NOT_APPLICABLE = {
    "test_ipipe_notified": "CKAN's IPipe notifies other CKAN extensions; Exporter announces finished jobs by callbacks and webhooks",
    "test_ipipe_notified_dataset": "as above, per dataset",
}


def test_every_case_of_ckanext_archivers_test_archiver_module_is_in_the_table():
    """Their test names (ckanext/archiver/tests/test_archiver.py: TestLinkChecker, TestArchiver, TestDownload)."""
    theirs = {
        "test_file_url", "test_bad_url", "test_empty_url", "test_url_with_503", "test_url_with_404", "test_url_with_405",
        "test_url_with_30x_follows_redirect", "test_colon_in_query_string", "test_trailing_whitespace", "test_good_url",
        "test_non_escaped_url", "test_resource_hash_and_content_length", "test_archived_file",
        "test_update_url_with_unknown_content_type", "test_update_with_zero_length", "test_file_not_found", "test_server_error",
        "test_file_too_large_1", "test_file_too_large_2", "test_content_length_not_integer", "test_content_length_repeated",
        "test_url_with_30x_follows_and_records_redirect", "test_head_unsupported", "test_wms_error",
        "test_wms_1_3", "test_wms_1_1_1", "test_wfs", "test_download_file", "test_ipipe_notified", "test_ipipe_notified_dataset",
    }
    covered = {name for case, *_ in CASES for name in re.findall(r"test_\w+", case)}
    assert theirs <= covered | set(NOT_APPLICABLE), sorted(theirs - covered - set(NOT_APPLICABLE))
