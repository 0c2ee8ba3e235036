# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""Archiving one resource against real local servers: nginx and the scenario server."""

from __future__ import annotations

import hashlib
import re
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from exporter.archiver.archive import archive_resource
from exporter.archiver.fetch import FetchOptions, content_length, fetch, filename_for, retry_after, safe_filename
from exporter.archiver.models import STATUSES, ArchiveVersion
from exporter.archiver.policy import HostSlots, fresh_until
from exporter.archiver.resources import upsert_url
from exporter.models import TaskStatus
from exporter.netsafety import safe_session
from tests.archiver_fixtures import LOCAL, actx, archive_url, nginx, server, sha256, unique  # noqa: F401

KEY = re.compile(r"^archive/\d{8}T\d{6}Z/[0-9a-f-]{36}/[0-9a-f]{12}/[A-Za-z0-9._-]+$")


def stored_keys(ctx) -> list[str]:
    return [o.key for o in ctx.storage.list("archive/")]


def task_status(ctx, rid: str) -> TaskStatus:
    with ctx.db.session() as s:
        return s.scalars(select(TaskStatus).where(TaskStatus.entity_id == rid, TaskStatus.task_type == "archiver")).one()


def test_status_codes_are_ckans():
    assert STATUSES == {
        0: "Archived successfully", 1: "Content has not changed", 10: "URL invalid", 11: "URL request failed",
        12: "Download error", 21: "Chose not to download", 22: "Download failure", 23: "System error during archival",
    }


def test_archive_then_conditional_request_gets_304(actx, nginx):
    name = unique("data.csv")
    body = b"id,value\n1,one\n2,two\n"
    (nginx.root / name).write_bytes(body)
    url = f"{nginx.url}/{name}"

    first = archive_url(actx, url)
    a = first["archival"]
    assert (a["status_id"], a["status"], a["is_broken"]) == (0, "Archived successfully", False)
    assert KEY.match(a["cache_key"]) and a["cache_key"].endswith("/" + name)
    assert f"/{first['resource']['id']}/" in a["cache_key"]
    assert a["sha256"] == sha256(body) and a["md5"] == hashlib.md5(body).hexdigest() and a["size"] == len(body)
    assert a["mimetype"] == "text/csv" and a["etag"] and a["last_modified"]
    assert actx.storage.read_bytes(a["cache_key"]) == body
    assert a["cache_url"].endswith(f"/api/v1/resources/{first['resource']['id']}/download")

    second = archive_url(actx, url, force=True)
    b = second["archival"]
    assert (b["status_id"], b["status"]) == (1, "Content has not changed")
    assert b["cache_key"] == a["cache_key"] and b["sha256"] == a["sha256"]
    statuses = [line.split('"')[2].split()[0] for line in nginx.access_log() if f"/{name} " in line]
    assert statuses[-2:] == ["200", "304"]
    assert len(second["versions"]) == 1 and stored_keys(actx) == [a["cache_key"]]
    ts = task_status(actx, first["resource"]["id"])
    assert ts.state == "success" and ts.value["status_id"] == 1 and ts.failure_count == 0


def test_changed_file_is_stored_as_a_new_version(actx, nginx):
    name = unique("series.csv")
    (nginx.root / name).write_bytes(b"v,1\n")
    url = f"{nginx.url}/{name}"
    first = archive_url(actx, url)["archival"]
    (nginx.root / name).write_bytes(b"v,2\nlonger now\n")
    second = archive_url(actx, url)
    assert second["archival"]["status_id"] == 0
    assert second["archival"]["sha256"] == sha256(b"v,2\nlonger now\n") != first["sha256"]
    assert [v["sha256"] for v in second["versions"]] == [sha256(b"v,2\nlonger now\n"), sha256(b"v,1\n")]


def test_fresh_copy_means_no_request(actx, nginx):
    url = f"{nginx.url}/cached/fresh.csv"
    first = archive_url(actx, url)
    assert first["archival"]["status_id"] == 0 and first["archival"]["fresh_until"]
    hits = sum("/cached/fresh.csv " in line for line in nginx.access_log())
    again = archive_url(actx, url)
    assert again["outcome"] == "fresh"
    assert sum("/cached/fresh.csv " in line for line in nginx.access_log()) == hits
    assert again["archival"]["next_check_at"] >= again["archival"]["fresh_until"]


def test_identical_body_is_not_stored_twice(actx, server):
    url = f"{server.url}/data.csv?body=same-{unique('x.y')}"
    first = archive_url(actx, url)["archival"]
    second = archive_url(actx, url)
    assert second["archival"]["status_id"] == 1 and "not stored twice" in second["archival"]["reason"]
    assert len(second["versions"]) == 1
    assert [k for k in stored_keys(actx) if second["resource"]["id"] in k] == [first["cache_key"]]


def test_etag_from_the_server_is_sent_back(actx, server):
    server.versioned_body = b"etagged\n"
    url = f"{server.url}/versioned?etag=1"
    archive_url(actx, url)
    rec = archive_url(actx, url)
    assert rec["archival"]["status_id"] == 1
    sent = [h for p, h in server.requests if p == "/versioned"][-1]
    assert sent["If-None-Match"] == rec["archival"]["etag"]
    assert sent["User-Agent"] == actx.settings.archiver_user_agent and sent["Accept-Encoding"] == "identity"


def test_4xx_not_retried_and_failures_counted_then_reset(actx, server):
    url = f"{server.url}/flaky?fails=2&code=404&k={unique('a.b')}"
    first = archive_url(actx, url)["archival"]
    assert (first["status_id"], first["is_broken"], first["failure_count"], first["attempts"]) == (12, True, 1, 1)
    assert first["reason"] == "Server reported status error: 404 Not Found"
    second = archive_url(actx, url)["archival"]
    assert second["failure_count"] == 2 and second["first_failure"] == first["first_failure"]
    rid = upsert_url(actx, url)
    assert task_status(actx, rid).failure_count == 2 and task_status(actx, rid).state == "failure"
    third = archive_url(actx, url)["archival"]
    assert (third["status_id"], third["failure_count"], third["first_failure"], third["is_broken"]) == (0, 0, None, False)
    assert third["last_success"] and task_status(actx, rid).failure_count == 0


def test_5xx_retried_until_success(actx, server):
    path = f"/flaky?fails=2&code=503&k={unique('a.b')}"
    rec = archive_url(actx, server.url + path)["archival"]
    assert rec["status_id"] == 0 and rec["attempts"] == 3
    assert server.full_counts[path] == 3


def test_gives_up_after_three_attempts(actx, server):
    before = server.counts["/status/502"]
    rec = archive_url(actx, f"{server.url}/status/502")["archival"]
    assert rec["status_id"] == 12 and rec["attempts"] == 3
    assert rec["reason"] == "Server reported status error: 502 Bad Gateway" and rec["attempts"] == 3
    assert server.counts["/status/502"] - before == 3


def test_retry_after_is_honoured_and_capped(server):
    waits: list[float] = []
    session = safe_session(LOCAL)
    options = FetchOptions(backoff=0.001, retry_after_max=30)
    result = fetch(session, f"{server.url}/flaky?fails=1&code=429&retry_after=7&k={unique('a.b')}", options, sleep=waits.append)
    assert result.status_id == 0 and result.attempts == 2 and waits[0] >= 7
    waits.clear()
    result = fetch(session, f"{server.url}/flaky?fails=1000000&code=429&retry_after=99999", options, sleep=waits.append)
    assert result.status_id == 12 and len(waits) == 2 and all(w == 30 for w in waits)
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 60) == 0.0 and retry_after("soon", 60) is None


def test_retries_back_off_doubling_with_jitter_and_check_in_before_each_attempt(server):
    from datetime import timedelta
    from email.utils import format_datetime
    from urllib.parse import quote

    from exporter.db import utcnow

    waits: list[float] = []
    turns: list[int] = []
    session = safe_session(LOCAL)
    options = FetchOptions(backoff=1.0, retry_after_max=60)
    result = fetch(session, f"{server.url}/flaky?fails=5&code=503&k={unique('a.b')}", options, before_attempt=lambda: turns.append(1), sleep=waits.append)
    assert (result.status_id, result.attempts, result.http_status) == (12, 3, 503) and len(turns) == 3
    assert result.reason == "Server reported status error: 503 Service Unavailable" and result.attempts == 3
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0
    waits.clear()
    result = fetch(session, f"{server.url}/flaky?fails=1&code=404&k={unique('a.b')}", options, sleep=waits.append)
    assert (result.status_id, result.attempts, waits) == (12, 1, [])  # a 4xx is an answer, not a hiccup
    result = fetch(session, f"{server.url}/flaky?fails=1&code=503&k={unique('a.b')}", FetchOptions(attempts=1), sleep=waits.append)
    assert (result.status_id, result.attempts, waits) == (12, 1, [])
    soon = quote(format_datetime(utcnow() + timedelta(seconds=20), usegmt=True))
    result = fetch(session, f"{server.url}/flaky?fails=1&code=503&retry_after={soon}&k={unique('a.b')}", options, sleep=waits.append)
    assert result.status_id == 0 and result.attempts == 2 and 17 <= waits[0] <= 21  # an HTTP date counts from now
    assert retry_after(" 12 ", 60) == 12 and retry_after("", 60) is None and retry_after(None, 60) is None


def test_timeouts_and_refused_connections_are_retried(actx, server):
    before = server.counts["/hang"]
    rec = archive_url(actx, f"{server.url}/hang?delay=1.6")["archival"]
    assert rec["status_id"] == 12 and rec["attempts"] == 3 and rec["reason"].startswith("Connection timed out after")
    assert server.counts["/hang"] - before == 3
    from tests.http_servers import free_port

    rec = archive_url(actx, f"http://127.0.0.1:{free_port()}/nothing.csv")["archival"]
    assert rec["status_id"] == 12 and rec["attempts"] == 3 and rec["reason"].startswith("Connection error: ") and "refused" in rec["reason"]


def test_redirects_followed_and_final_url_recorded(actx, server):
    ok = archive_url(actx, f"{server.url}/redirect?n=3")["archival"]
    assert ok["status_id"] == 0 and ok["url_redirected_to"] == f"{server.url}/data.csv"
    bad = archive_url(actx, f"{server.url}/redirect?to=/status/404")["archival"]
    assert bad["status_id"] == 12 and bad["url_redirected_to"] == f"{server.url}/status/404"
    loop = archive_url(actx, f"{server.url}/redirect?n=9")["archival"]
    assert loop["status_id"] == 12 and loop["reason"] == "Too many redirects" and "/redirect?n=" in loop["url_redirected_to"]


def test_internal_addresses_refused_by_default_even_after_redirect(actx, server):
    actx.settings = actx.settings.replace(archiver_allow_networks=())
    direct = archive_url(actx, f"{server.url}/data.csv?direct=1")["archival"]
    assert direct["status_id"] == 10 and "loopback" in direct["reason"] and direct["is_broken"] is True
    actx.settings = actx.settings.replace(archiver_allow_networks=LOCAL)
    for target, kind in (("http://169.254.169.254/latest/meta-data/", "cloud metadata"), ("http://192.168.0.1/x.csv", "private"), (f"http://[::1]:{server.port}/data.csv", "loopback")):
        rec = archive_url(actx, f"{server.url}/redirect?to={target}")["archival"]
        assert rec["status_id"] == 10 and kind in rec["reason"], rec
        assert rec["url_redirected_to"] == target
    assert stored_keys(actx) == []


def test_invalid_urls(actx):
    """Portals can carry any URL; only http(s) with a host is fetched."""
    scheme = "Invalid url scheme. Please use one of: http https"  # CKAN's archiver's words
    for url, why in (("ftp://example.com/data.csv", scheme), ("file:///etc/passwd", scheme), ("http://", "URL parsing failure - did not find a host name"), ("not a url", "URL parsing failure")):
        rec = archive_resource(actx, upsert_url(actx, url))["archival"]
        assert (rec["status_id"], rec["status"], rec["attempts"]) == (10, "URL invalid", 0)  # no request made
        assert why in rec["reason"], rec["reason"]


def test_content_length_over_limit_is_not_downloaded(actx, nginx):
    rec = archive_url(actx, f"{nginx.url}/big.bin")["archival"]
    assert rec["status_id"] == 21 and rec["status"] == "Chose not to download"
    assert rec["size"] == 200_000 and rec["mimetype"] == "application/octet-stream"
    assert rec["reason"] == "Content-length 200000 exceeds maximum allowed value 100000" and rec["cache_key"] is None
    assert stored_keys(actx) == []


def test_limit_enforced_while_streaming(actx, server):
    rec = archive_url(actx, f"{server.url}/chunked?size=300000")["archival"]
    assert rec["status_id"] == 21 and re.fullmatch(r"Content-length \d+ exceeds maximum allowed value 100000", rec["reason"]) and rec["cache_key"] is None
    rec = archive_url(actx, f"{server.url}/lie?declared=abc&actual=250000")["archival"]  # non-numeric length
    assert rec["status_id"] == 21 and re.fullmatch(r"Content-length \d+ exceeds maximum allowed value 100000", rec["reason"])
    assert stored_keys(actx) == []
    assert list((actx.settings.var_dir / "storage" / ".tmp").iterdir()) == []  # no half-written leftovers
    small = archive_url(actx, f"{server.url}/chunked?size=5000")["archival"]
    assert small["status_id"] == 0 and small["size"] == 5000


def test_lying_and_repeated_content_length(actx, server):
    under = archive_url(actx, f"{server.url}/lie?declared=10&actual=100000")["archival"]
    assert under["status_id"] == 0 and under["size"] == 10  # never more than declared is read
    same = archive_url(actx, f"{server.url}/lie?declared=50|50&actual=50")["archival"]
    assert same["status_id"] == 0 and same["size"] == 50
    conflicting = archive_url(actx, f"{server.url}/lie?declared=5|7&actual=7")["archival"]
    assert conflicting["status_id"] == 12 and "Content-Length" in conflicting["reason"]
    short = archive_url(actx, f"{server.url}/lie?declared=100&actual=5")["archival"]
    assert short["status_id"] == 12 and "IncompleteRead" in short["reason"] and short["is_broken"] is True
    assert content_length("12, 12") == 12 and content_length("12, 13") is None and content_length("x") is None


def test_total_time_limit_stops_a_slow_body(actx, server):
    actx.settings = actx.settings.replace(archiver_total_timeout=0.4)
    rec = archive_url(actx, f"{server.url}/slow?size=100&delay=0.02")["archival"]
    assert rec["status_id"] == 12 and "longer than the limit of 0.4s" in rec["reason"]
    assert stored_keys(actx) == []


def test_html_is_recorded_not_stored_unless_policy_says_so(actx, server):
    rec = archive_url(actx, f"{server.url}/html")["archival"]
    assert rec["status_id"] == 21 and rec["mimetype"] == "text/html" and "not data" in rec["reason"]
    assert rec["is_broken"] is False and rec["cache_key"] is None
    actx.settings = actx.settings.replace(archiver_skip_content_types="")
    rec = archive_url(actx, f"{server.url}/html?again=1")["archival"]
    assert rec["status_id"] == 0 and rec["mimetype"] == "text/html" and rec["cache_key"]


def test_link_check_only_stores_nothing(actx, nginx):
    name = unique("linkonly.csv")
    (nginx.root / name).write_bytes(b"just,checking\n")
    first = archive_url(actx, f"{nginx.url}/{name}", link_check_only=True)["archival"]
    assert first["status_id"] == 0 and "link-check-only" in first["reason"] and first["cache_key"] is None
    assert first["size"] == len(b"just,checking\n") and first["mimetype"] == "text/csv"
    second = archive_url(actx, f"{nginx.url}/{name}", link_check_only=True, force=True)["archival"]
    assert second["status_id"] == 1 and second["cache_key"] is None
    assert stored_keys(actx) == []


def test_filename_from_content_disposition_made_safe(actx, server):
    rec = archive_url(actx, f"{server.url}/disposition")["archival"]
    assert rec["cache_key"].endswith("/My_Report_2024.csv") and ".." not in rec["cache_key"]
    assert filename_for("http://x/a/b/r%C3%A9sum%C3%A9.csv?x=1", None) == "r_sum_.csv"
    assert filename_for("http://x/", "attachment; filename*=UTF-8''na%C3%AFve%20file.xlsx") == "na_ve_file.xlsx"
    assert filename_for("http://x/", None) == "resource" and safe_filename("../..") == "resource"


def test_memory_stays_flat_while_streaming(actx, nginx):
    path = nginx.root / unique("huge.bin")
    with open(path, "wb") as fh:
        fh.truncate(48 * 1024 * 1024)
    actx.settings = actx.settings.replace(archiver_max_bytes=1 << 30)
    tracemalloc.start()
    try:
        rec = archive_url(actx, f"{nginx.url}/{path.name}")["archival"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        path.unlink()
    assert rec["status_id"] == 0 and rec["size"] == 48 * 1024 * 1024
    assert rec["sha256"] == hashlib.sha256(b"\0" * (48 * 1024 * 1024)).hexdigest()
    assert peak < 12 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 48 MiB body"


def test_storage_failure_is_a_system_error(actx, server, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(actx.storage), "open_write", broken)
    rec = archive_url(actx, f"{server.url}/data.csv?disk=full")["archival"]
    assert rec["status_id"] == 23 and "No space left" in rec["reason"] and rec["is_broken"] is None
    assert rec["failure_count"] == 1


HOLD_SECONDS = 1.0


class _MeetingHandler(BaseHTTPRequestHandler):
    """Counts requests in flight (`peak`). Each stays in flight until more than `meet` are in
    flight at once (a limit broken: all let go) or HOLD_SECONDS have passed, so a request the
    client should have held back has the time to show up while `meet` others are in flight."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        meet = int(self.path.rsplit("meet=", 1)[1].split("&")[0])
        with srv.cond:
            srv.inflight += 1
            srv.peak = max(srv.peak, srv.inflight)
            srv.cond.notify_all()
            srv.cond.wait_for(lambda: srv.inflight > meet, timeout=HOLD_SECONDS)
            # Counted out before the body is sent: the client still holds its slot until then.
            srv.inflight -= 1
            srv.cond.notify_all()
        body = b"x" * 8
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def meeting_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _MeetingHandler)
    srv.daemon_threads = True
    srv.cond, srv.inflight, srv.peak = threading.Condition(), 0, 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("limit", [1, 2])
def test_per_host_concurrency_holds_across_threads(actx, meeting_server, limit):
    """The server sees exactly `limit` requests at once from 4 threads: never more, and the limit is used."""
    actx.settings = actx.settings.replace(archiver_host_concurrency=limit, archiver_read_timeout=10 * HOLD_SECONDS)
    actx.__dict__.pop("_archiver_slots", None)
    url = f"http://127.0.0.1:{meeting_server.server_address[1]}"
    # Each request stays in flight at the server for a while, so the others start meanwhile:
    # `limit` of them reach it at once, and one more would if the archiver let it through.
    ids = [upsert_url(actx, f"{url}/r{i}.bin?meet={limit}") for i in range(4)]
    threads = [threading.Thread(target=archive_resource, args=(actx, rid)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert meeting_server.peak == limit
    assert all(task_status(actx, rid).state == "success" for rid in ids)


CHILD = """
import sys, threading
from exporter.archiver.archive import archive_resource
from exporter.config import load_settings
from exporter.context import Context
ctx = Context(load_settings())
threads = [threading.Thread(target=archive_resource, args=(ctx, rid)) for rid in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_per_host_concurrency_holds_across_processes(pg_ctx, meeting_server, tmp_path):
    """Two processes of two threads each, limit 2: the server never sees more than 2 at once, and sees 2."""
    import os
    import subprocess
    import sys

    pg_ctx.settings = pg_ctx.settings.replace(archiver_allow_networks=LOCAL)
    url = f"http://127.0.0.1:{meeting_server.server_address[1]}"
    ids = [upsert_url(pg_ctx, f"{url}/p{i}.bin?meet=2") for i in range(4)]
    env = dict(
        os.environ,
        EXPORTER_DATABASE_URL=pg_ctx.settings.database_url,
        EXPORTER_VAR_DIR=str(pg_ctx.settings.var_dir),
        EXPORTER_SECRET_KEY="test-secret-key-0123456789",
        EXPORTER_BROKER_URL="memory://",
        EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32",
        EXPORTER_ARCHIVER_HOST_CONCURRENCY="2",
        EXPORTER_ARCHIVER_HOST_DELAY_MS="0",
        EXPORTER_ARCHIVER_READ_TIMEOUT=str(10 * HOLD_SECONDS),
    )
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, *pair], env=env) for pair in (ids[:2], ids[2:])]
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert meeting_server.peak == 2
    assert all(task_status(pg_ctx, rid).state == "success" for rid in ids)


def test_host_slot_waiters_do_not_busy_poll_the_database(actx):
    """Threads of one process wait on a semaphore; only a slot holder's process asks the database, with backoff."""
    slots = HostSlots(actx, concurrency=1, delay=0, lease_seconds=60)
    calls: list[str] = []
    real = slots._try_acquire
    slots._try_acquire = lambda host, holder: (calls.append(holder), real(host, holder))[1]
    entered, release = threading.Event(), threading.Event()

    def first() -> None:
        with slots.hold("example.org"):
            entered.set()
            release.wait(10)

    def other() -> None:
        with slots.hold("example.org"):
            pass

    holder = threading.Thread(target=first)
    holder.start()
    assert entered.wait(10)
    waiters = [threading.Thread(target=other) for _ in range(3)]
    for t in waiters:
        t.start()
    # The waiters block on the in-process semaphore: no database attempt while the slot is held.
    for t in waiters:
        t.join(timeout=0.3)
    assert len(calls) == 1
    release.set()
    holder.join(10)
    for t in waiters:
        t.join(10)
    assert len(calls) == 4  # one attempt per hold, none wasted on polling

    # Another process holds the only slot row: this one retries with backoff, capped at a few per second.
    other_process = HostSlots(actx, concurrency=1, delay=0, lease_seconds=60)
    pauses: list[float] = []
    waiting = HostSlots(actx, concurrency=1, delay=0, lease_seconds=60, sleep=pauses.append)
    attempts = iter(range(12))
    real_try = waiting._try_acquire
    waiting._try_acquire = lambda host, holder: real_try(host, holder) if next(attempts) == 11 else None
    with other_process.hold("example.net"):
        pass
    with waiting.hold("example.net"):
        pass
    assert len(pauses) == 11
    assert all(b >= a * 0.6 for a, b in zip(pauses, pauses[1:], strict=False))  # backing off
    assert pauses[0] <= 0.0625 and all(p >= 0.375 for p in pauses[-4:]) and max(pauses) <= 0.625


def test_two_archives_of_one_resource_in_the_same_second_keep_two_objects(actx):
    from datetime import UTC, datetime

    from exporter.archiver.archive import StorageSink

    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    rid = "0b7c6a3e-2f1d-4c5b-9a8e-7d6c5b4a3f21"
    a, b = StorageSink(actx.storage, rid, now), StorageSink(actx.storage, rid, now)
    # Both open before either has written: the old stat-then-write picked one key for both.
    with a.open("data.csv", "text/csv") as fa, b.open("data.csv", "text/csv") as fb:
        fa.write(b"first,1\n")
        fb.write(b"second,22\n")
    assert a.key != b.key and KEY.match(a.key) and KEY.match(b.key)
    assert a.key.startswith(f"archive/20260304T050607Z/{rid}/") and a.key.endswith("/data.csv")
    assert actx.storage.read_bytes(a.key) == b"first,1\n" and actx.storage.read_bytes(b.key) == b"second,22\n"
    assert (a.info.sha256, b.info.sha256) == (sha256(b"first,1\n"), sha256(b"second,22\n"))
    assert sorted(k for k in stored_keys(actx) if rid in k) == sorted([a.key, b.key])


def test_minimum_delay_between_requests_to_a_host(actx):
    slept: list[float] = []
    import time

    slots = HostSlots(actx, concurrency=2, delay=0.2, lease_seconds=60, sleep=lambda s: (slept.append(s), time.sleep(s)))
    with slots.hold("example.org") as gate:
        gate()
        gate()
    assert slept and 0 < max(slept) <= 0.2


def test_freshness_rules():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert (fresh_until({"cache-control": "public, max-age=600"}, now) - now).total_seconds() == 600
    assert (fresh_until({"cache-control": "max-age=600", "age": "100"}, now) - now).total_seconds() == 500
    assert fresh_until({"cache-control": "no-cache, max-age=600"}, now) is None
    assert fresh_until({"expires": "Thu, 01 Jan 2026 01:00:00 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}, now) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert fresh_until({"expires": "0"}, now) is None and fresh_until({}, now) is None


def test_freshness_reads_cache_control_as_rfc_9111_says():
    """Where the libraries looked at (cachecontrol, hishel) differ from what the archiver needs."""
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)

    def ttl(headers):
        until = fresh_until(headers, now)
        return None if until is None else (until - now).total_seconds()

    assert ttl({"cache-control": "Public, Max-Age=60"}) == 60  # directive names are case-insensitive
    assert ttl({"cache-control": 'max-age="60"'}) == 60  # a quoted value is still a value
    assert ttl({"cache-control": "max-age=60, s-maxage=120"}) == 120  # we share our copies: s-maxage wins
    assert ttl({"cache-control": "max-age=60", "age": "60"}) is None  # what a cache on the way held counts
    assert ttl({"cache-control": "max-age=abc", "expires": "Thu, 01 Jan 2026 01:00:00 GMT"}) is None  # a broken max-age is not skipped
    assert ttl({"cache-control": "no-store, max-age=60"}) is None
    assert ttl({"last-modified": "Thu, 01 Jan 2015 00:00:00 GMT"}) is None  # no heuristic freshness: the recheck interval decides


def test_archive_resource_task_is_registered_on_the_archive_queue(actx, server):
    from workers.tasks import archive_resource as task

    assert task.name == "exporter.archive_resource" and task.queue == "archive"
    rid = upsert_url(actx, f"{server.url}/data.csv?via=task")
    assert task(rid)["outcome"] == "stored"
    with actx.db.session() as s:
        assert len(s.scalars(select(ArchiveVersion).where(ArchiveVersion.resource_id == rid)).all()) == 1
