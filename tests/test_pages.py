"""Operator and service-point pages through Flask's test client, on both database backends."""

from __future__ import annotations

import ipaddress
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import main
from exporter import access, jobs, runner, webhooks
from exporter.access import AuditLog
from exporter.archiver.portals import add_portal
from exporter.models import Job
from exporter.raids import registry
from exporter.raids.generator import generate
from web import create_app
from web.pages import operator_password

from .webhook_receiver import start_receiver

PASSWORD = "operator-test-password"


@pytest.fixture
def app(ctx):
    ctx.settings = ctx.settings.replace(operator_password=PASSWORD, flower_url="http://127.0.0.1:5599")
    app = create_app(ctx)
    app.config["TESTING"] = True
    return app


def csrf(client, path="/pages/login") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, secret=PASSWORD, path="/pages/login"):
    return client.post(path, data={"secret": secret, "csrf_token": csrf(client, path)})


@pytest.fixture
def operator(app):
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def submit_form(client, name, **fields):
    return client.post(f"/pages/new/{name}", data={"csrf_token": csrf(client, "/pages/new"), "description": "", "callbackURLs": "", **fields})


def audit_actions(ctx, job_id=None):
    return [a.action for a in access.list_audit(ctx, job_id=job_id)]


def test_operator_pages_need_a_login(app):
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/pages/")
    r = client.get("/pages/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/pages/login?next=/pages/")
    for path in ("/pages/new", "/pages/jobs/x", "/pages/reports/broken-links", "/pages/jobs/x/files/data"):
        assert client.get(path).status_code == 302, path
    assert client.get("/pages/jobs.json?ids=x").status_code == 401
    assert client.post("/pages/new/synthetic", data={"size": "1"}).status_code == 400  # no CSRF token
    r = login(client, "wrong")
    assert r.status_code == 401 and "wrong password" in r.get_data(as_text=True)
    assert client.get("/pages/").status_code == 302
    r = client.post("/pages/login?next=/pages/new", data={"secret": PASSWORD, "csrf_token": csrf(client)})
    assert r.headers["Location"] == "/pages/new"
    assert client.get("/pages/").status_code == 200
    assert client.post("/pages/login?next=//evil.example/", data={"secret": PASSWORD, "csrf_token": csrf(client)}).headers["Location"] == "/pages/"
    client.post("/pages/logout", data={"csrf_token": csrf(client, "/pages/")})
    assert client.get("/pages/").status_code == 302


def test_without_a_setting_the_password_is_generated_once_into_var_dir(ctx):
    app = create_app(ctx)
    password = operator_password(ctx.settings)
    assert len(password) >= 20
    assert (ctx.settings.var_dir / "operator_password").read_text() == password == operator_password(ctx.settings)
    client = app.test_client()
    assert login(client, password).status_code == 302


def test_operator_tokens_log_in_and_revoking_one_ends_its_session(app, ctx):
    row, raw = access.create_token(ctx, "operator", name="ops")
    _sp, sp_raw = access.create_token(ctx, "service_point", service_point_id="20000000")
    client = app.test_client()
    assert login(client, sp_raw).status_code == 401
    assert login(client, raw).status_code == 302
    assert f"token:{row.id} (ops)" in client.get("/pages/").get_data(as_text=True)
    access.revoke_token(ctx, row.id)
    assert client.get("/pages/").status_code == 302


def test_dashboard_shows_jobs_with_progress_and_a_flower_link(operator, ctx):
    running = jobs.submit(ctx, "synthetic", {"size": 10})
    token = jobs.claim(ctx, running.id)
    jobs.progress(ctx, running.id, token, 4, 10)
    failed = jobs.submit(ctx, "synthetic", {"size": 11})
    jobs.fail(ctx, failed.id, jobs.claim(ctx, failed.id), "disk on fire")
    html = operator.get("/pages/").get_data(as_text=True)
    assert f'data-job-id="{running.id}"' in html and 'value="40"' in html and "disk on fire" in html
    assert 'href="http://127.0.0.1:5599"' in html
    assert 'data-poll-url="/pages/jobs.json"' in html and "progress.js" in html
    only_failed = operator.get("/pages/?status=failed").get_data(as_text=True)
    assert failed.id in only_failed and running.id not in only_failed
    body = operator.get(f"/pages/jobs.json?ids={running.id},{failed.id}").get_json()
    by_id = {j["id"]: j for j in body["jobs"]}
    assert (by_id[running.id]["percentage"], by_id[running.id]["final"]) == (40, False)
    assert (by_id[failed.id]["status"], by_id[failed.id]["final"], by_id[failed.id]["error"]) == ("failed", True, "disk on fire")
    assert operator.get("/static/progress.js").status_code == 200


def test_forms_start_jobs_and_show_what_was_wrong(operator, ctx):
    html = operator.get("/pages/new").get_data(as_text=True)
    for name in ("public", "private", "archive", "sweep", "synthetic"):
        assert f'id="form-{name}"' in html
    assert "not installed" not in html
    r = submit_form(operator, "synthetic", size="64", steps="2", delay="0", description="from the form")
    assert r.status_code == 302
    job_id = r.headers["Location"].rsplit("/", 1)[1]
    job = jobs.get(ctx, job_id)
    assert (job.kind, job.params, job.description, job.requested_by) == ("synthetic", {"size": 64, "steps": 2, "delay": 0.0}, "from the form", "operator (password)")
    assert ctx.sent[-1] == ("exporter.write_synthetic", job_id, "engine")
    assert "pages.create" in audit_actions(ctx, job_id)
    again = submit_form(operator, "synthetic", size="64", steps="2", delay="0")
    assert again.headers["Location"] == f"/pages/jobs/{job_id}?outcome=joined"

    r = submit_form(operator, "synthetic", size="-1", steps="2", delay="0")
    assert r.status_code == 400
    assert "size must be a positive whole number" in r.get_data(as_text=True)
    r = submit_form(operator, "synthetic", size="ten", steps="2", delay="0")
    assert r.status_code == 400 and 'name="size" value="ten" class="field-error"' in r.get_data(as_text=True)
    r = submit_form(operator, "public", agency="", mode="full", format="zip")
    assert r.status_code == 400 and "is required" in r.get_data(as_text=True)
    r = submit_form(operator, "synthetic", size="8", steps="1", delay="0", callbackURLs="http://127.0.0.1:9/hook")
    assert r.status_code == 400 and "loopback" in r.get_data(as_text=True)
    assert operator.post("/pages/new/nonsense", data={"csrf_token": csrf(operator, "/pages/new")}).status_code == 404


def test_export_and_archive_forms_submit_their_kinds(operator, ctx):
    generate(ctx, 3, service_points=[20000000], seed=1)
    r = submit_form(operator, "public", agency="https://ror.org/000000000", mode="full", format="zip")
    assert r.status_code == 400 and "Registration agency: no agency" in r.get_data(as_text=True)
    r = submit_form(operator, "public", agency="https://ror.org/038sjwq14", mode="incremental", format="tar.gz")
    assert r.status_code == 302, r.get_data(as_text=True)
    job = jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1])
    assert job.kind == "export_public" and job.params["mode"] == "incremental" and job.params["format"] == "tar.gz"
    r = submit_form(operator, "private", service_point="20000000", mode="full", format="zip")
    assert r.status_code == 302, r.get_data(as_text=True)
    assert jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1]).params["service_point"] == 20000000
    ctx.settings = ctx.settings.replace(archiver_allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    r = submit_form(operator, "archive", urls="https://data.example.org/a.csv\n\n https://data.example.org/b.csv ")
    assert r.status_code == 302, r.get_data(as_text=True)
    job = jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1])
    assert job.kind == "archive_urls"
    assert [u if isinstance(u, str) else u.get("url") for u in job.params["urls"]] == ["https://data.example.org/a.csv", "https://data.example.org/b.csv"]
    r = submit_form(operator, "sweep", portal="")
    assert r.status_code == 400
    add_portal(ctx, "data-gov", "https://data.example.gov")
    r = submit_form(operator, "sweep", portal="data-gov")
    assert r.status_code == 302, r.get_data(as_text=True)
    assert jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1]).params["portal"] == "data-gov"


ARDC = "https://ror.org/038sjwq14"


def register(ctx, agencies: dict[str, str], service_points: dict[int, tuple[str, str]] = {}) -> None:  # noqa: B006
    """Agencies {ROR: name} and service points {id: (agency ROR, name)}, in one transaction."""
    with ctx.db.session() as s:
        for ror, name in agencies.items():
            registry.ensure_agency(s, ror, name)
        for number, (ror, name) in service_points.items():
            registry.ensure_service_point(s, number, ror, name)


def options(html: str, name: str) -> list[tuple[str, str]]:
    """(value, label) of each option of the <select name=...> in html."""
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)


def test_forms_offer_the_registered_agencies_service_points_and_portals(operator, ctx):
    html = operator.get("/pages/new").get_data(as_text=True)
    assert options(html, "agency") == [("", "– none registered –")] and "No registration agency is registered yet" in html
    assert options(html, "portal") == [("", "– none registered –")]
    register(ctx, {ARDC: "Australian Research Data Commons", "https://ror.org/02stey378": "ANDS"},
             {20000000: (ARDC, "ARDC service desk"), 30000000: ("https://ror.org/02stey378", "ANDS desk")})
    add_portal(ctx, "data-gov", "https://data.example.gov")
    html = operator.get("/pages/new").get_data(as_text=True)
    assert options(html, "agency") == [("", "– choose one –"), ("02stey378", "ANDS (02stey378)"), ("038sjwq14", "Australian Research Data Commons (038sjwq14)")]
    assert options(html, "service_point") == [
        ("", "– choose one –"),
        ("30000000", "ANDS desk (30000000) of ANDS (02stey378)"),
        ("20000000", "ARDC service desk (20000000) of Australian Research Data Commons (038sjwq14)"),
    ]
    assert options(html, "portal") == [("", "– choose one –"), ("data-gov", "data-gov · https://data.example.gov")]
    assert "data-picker-url" not in html  # short lists are plain <select>s

    r = submit_form(operator, "public", agency="038sjwq14", mode="full", format="zip")
    assert r.status_code == 302, r.get_data(as_text=True)
    assert jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1]).params["agency"] == "038sjwq14"
    r = submit_form(operator, "private", service_point="ardc SERVICE desk", mode="full", format="zip")  # an exact name, any case
    assert r.status_code == 302, r.get_data(as_text=True)
    assert jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1]).params["service_point"] == 20000000


def test_a_long_list_gets_a_search_box_over_a_json_endpoint(operator, app, ctx):
    register(ctx, {f"https://ror.org/0a{i:07d}": f"Agency number {i:03d}" for i in range(300)} | {ARDC: "Australian Research Data Commons"})
    html = operator.get("/pages/new").get_data(as_text=True)
    assert '<select name="agency"' not in html
    box = re.search(r'<input type="text" name="agency"[^>]*>', html, re.S).group(0)
    assert 'data-picker-url="/pages/choices/agencies.json"' in box and 'role="combobox"' in box and "301 registered" in box
    assert "picker.js" in html and operator.get("/static/picker.js").status_code == 200

    def search(q, source="agencies"):
        return operator.get(f"/pages/choices/{source}.json", query_string={"q": q}).get_json()

    assert search("research data") == {"choices": [{"value": "038sjwq14", "label": "Australian Research Data Commons (038sjwq14)"}], "more": False}
    assert search("NUMBER 27")["choices"] == [{"value": f"0a0000{n}", "label": f"Agency number {n} (0a0000{n})"} for n in range(270, 280)]
    assert search("0a0000123")["choices"] == [{"value": "0a0000123", "label": "Agency number 123 (0a0000123)"}]
    assert search("https://ror.org/038sjwq14")["choices"][0]["value"] == "038sjwq14"
    first = search("")
    assert len(first["choices"]) == 20 and first["more"] is True
    assert search("%") == {"choices": [], "more": False}  # typed text is matched literally
    assert search("no such agency") == {"choices": [], "more": False}
    add_portal(ctx, "data-gov", "https://data.example.gov")
    add_portal(ctx, "city", "https://opendata.city.example")
    assert [c["value"] for c in search("EXAMPLE", "portals")["choices"]] == ["city", "data-gov"]
    assert search("opendata", "portals")["choices"] == [{"value": "city", "label": "city · https://opendata.city.example"}]
    r = operator.get("/pages/choices/planets.json")
    assert r.status_code == 404 and r.get_json()["field"] == "source"
    assert app.test_client().get("/pages/choices/agencies.json?q=a").status_code == 401

    register(ctx, {}, {20000000 + i: (f"https://ror.org/0a{i % 300:07d}", f"Desk {i}") for i in range(60)})
    assert [c["value"] for c in search("desk 4", "service_points")["choices"]] == ["20000004", *(str(20000040 + i) for i in range(10))]
    assert search("agency number 005", "service_points")["choices"] == [{"value": "20000005", "label": "Desk 5 (20000005) of Agency number 005 (0a0000005)"}]
    assert search("2000001", "service_points")["choices"][0]["value"] == "20000010"
    html = operator.get("/pages/new").get_data(as_text=True)
    assert 'data-picker-url="/pages/choices/service_points.json"' in html
    r = submit_form(operator, "public", agency="0a0000042", mode="weekly", format="zip")  # comes back with the agency named
    assert r.status_code == 400 and "mode must be one of" in r.get_data(as_text=True)
    assert '<span class="picker-chosen" aria-live="polite">Agency number 042 (0a0000042)</span>' in r.get_data(as_text=True)
    r = submit_form(operator, "public", agency="agency number 042", mode="full", format="zip")
    assert r.status_code == 302, r.get_data(as_text=True)
    assert jobs.get(ctx, r.headers["Location"].rsplit("/", 1)[1]).params["agency"] == "0a0000042"


def test_unknown_or_malformed_choices_are_refused_naming_the_field(operator, ctx):
    register(ctx, {ARDC: "Twin", "https://ror.org/02stey378": "twin"}, {20000000: (ARDC, "Desk")})
    cases = [
        ("public", "agency", "nobody", "Registration agency: no agency &#39;nobody&#39; is registered"),
        ("public", "agency", "Twin", "Registration agency: no agency &#39;Twin&#39;"),  # a name two agencies have
        ("public", "agency", "a/b%c" + "x" * 300, "Registration agency: no agency"),
        ("private", "service_point", "30000000", "Service point: no service point &#39;30000000&#39; is registered"),
        ("private", "service_point", str(2**70), "Service point: no service point"),
        ("private", "service_point", "-5", "Service point: no service point"),
        ("private", "service_point", "²", "Service point: no service point"),
        ("sweep", "portal", "nowhere", "Portal: no portal &#39;nowhere&#39; is registered"),
    ]
    for form, name, value, message in cases:
        r = submit_form(operator, form, **{name: value, "mode": "full", "format": "zip"})
        html = r.get_data(as_text=True)
        assert r.status_code == 400, (form, value, r.status_code)
        assert message in html, (form, value)
        assert re.search(rf'<(select|input)[^>]*name="{name}"[^>]*class="field-error"', html), (form, value)
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_description_the_api_would_refuse_is_refused_by_the_form_too(operator, ctx):
    register(ctx, {ARDC: "Australian Research Data Commons"}, {})
    for description, message in (("x" * 1001, "description must be at most 1000 characters, got 1001"), ("bell\x07", "description must not hold control characters")):
        r = submit_form(operator, "public", agency=ARDC, mode="full", format="zip", description=description)
        html = r.get_data(as_text=True)
        assert r.status_code == 400 and message in html
        assert re.search(r'<input[^>]*name="description"[^>]*class="field-error"', html)
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_pages_show_the_agency_or_service_point_name_beside_its_id(app, operator, ctx):
    register(ctx, {ARDC: "Australian Research Data Commons"}, {20000001: (ARDC, "ARDC service desk")})
    public = jobs.submit(ctx, "export_public", {"agency": ARDC}, enqueue=False)
    private = _private_job(ctx, 20000001)
    orphan = jobs.submit(ctx, "export_private", {"service_point": 40000000}, enqueue=False)
    html = operator.get("/pages/").get_data(as_text=True)
    rows = {job_id: re.search(rf'<tr data-job-id="{job_id}".*?</tr>', html, re.S).group(0) for job_id in (public.id, private.id, orphan.id)}
    assert "Registration agency</span> Australian Research Data Commons (038sjwq14)" in rows[public.id]
    assert "Service point</span> ARDC service desk (20000001) of Australian Research Data Commons (038sjwq14)" in rows[private.id]
    assert "40000000 (not registered)" in rows[orphan.id]
    page = operator.get(f"/pages/jobs/{public.id}").get_data(as_text=True)
    assert '<th>Registration agency</th><td id="scope">Australian Research Data Commons (038sjwq14)</td>' in page
    page = operator.get(f"/pages/jobs/{private.id}").get_data(as_text=True)
    assert '<td id="scope">ARDC service desk (20000001) of Australian Research Data Commons (038sjwq14)</td>' in page
    listed = {line.split()[0]: line for line in CliRunner().invoke(main, ["jobs", "list"]).output.splitlines()}  # and on the command line
    assert "Australian Research Data Commons (038sjwq14)" in listed[public.id]
    assert "ARDC service desk (20000001) of Australian Research Data Commons (038sjwq14)" in listed[private.id]
    assert "40000000 (not registered)" in listed[orphan.id]

    _row, raw = access.create_token(ctx, "service_point", service_point_id="20000001")
    client = app.test_client()
    login(client, raw, "/pages/sp/login")
    page = client.get("/pages/sp/").get_data(as_text=True)
    assert "<h1>Private exports of ARDC service desk (20000001)</h1>" in page
    assert "A service point of Australian Research Data Commons (038sjwq14)" in page


def test_job_page_shows_params_artifacts_downloads_and_webhooks(operator, ctx):
    rcv, server = start_receiver()
    try:
        ctx.settings = ctx.settings.replace(webhook_allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        r = submit_form(operator, "synthetic", size="300", steps="3", delay="0", callbackURLs=rcv.url)
        job_id = r.headers["Location"].rsplit("/", 1)[1]
        html = operator.get(f"/pages/jobs/{job_id}").get_data(as_text=True)
        assert "pending" in html and "&#34;size&#34;: 300" in html and "Cancel" in html
        assert runner.run_job(ctx, job_id) == "succeeded"
        rcv.plan = [500]
        nid = int([j for t, j, q in ctx.sent if t == webhooks.TASK][0])
        webhooks.deliver(ctx, nid)
        html = operator.get(f"/pages/jobs/{job_id}").get_data(as_text=True)
        assert "succeeded" in html and "data.bin" in html and "Cancel" not in html
        assert 'id="deliveries"' in html and "HTTP 500" in html and rcv.url in html
        link = re.search(r'class="download" href="([^"]+)"', html).group(1)
        assert link == f"/pages/jobs/{job_id}/files/data"
        r = operator.get(link)
        assert r.status_code == 302
        signed = urlsplit(r.headers["Location"])
        body = operator.get(signed.path + "?" + signed.query).get_data()
        assert body == bytes([0]) * 100 + bytes([1]) * 100 + bytes([2]) * 100
        assert "pages.download" in audit_actions(ctx, job_id)
        assert operator.get(f"/pages/jobs/{job_id}/files/nope").status_code == 404
        assert operator.get("/pages/jobs/no-such-job").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_cancel_from_the_job_page(operator, ctx):
    job = jobs.submit(ctx, "synthetic", {})
    r = operator.post(f"/pages/jobs/{job.id}/cancel", data={"csrf_token": csrf(operator, "/pages/")})
    assert r.status_code == 302
    assert jobs.get(ctx, job.id).status == "cancelled"


def test_broken_links_page_lists_what_the_archiver_found_broken(operator, ctx):
    from exporter.archiver.sweep import inline_dispatcher

    html = operator.get("/pages/reports/broken-links").get_data(as_text=True)
    assert "not installed" not in html and "No broken links" in html
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CsvOr404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ctx.settings = ctx.settings.replace(archiver_allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), archiver_retry_backoff_ms=1)
        ctx.enqueue, shutdown = inline_dispatcher(ctx, fallback=ctx.enqueue)
        job = jobs.submit(ctx, "archive_urls", {"urls": [base + "/ok.csv", base + "/missing.csv"]}, enqueue=False)
        assert runner.run_job(ctx, job.id) == "fanned_out"  # its part ran inline and finished it
        shutdown()
        assert jobs.get(ctx, job.id).status == "succeeded"
    finally:
        server.shutdown()
        server.server_close()
    html = operator.get("/pages/reports/broken-links").get_data(as_text=True)
    assert "<strong>1 broken</strong>" in html
    assert f'href="{base}/missing.csv"' in html and f"{base}/ok.csv" not in html


class _CsvOr404(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"a,b\n1,2\n" if self.path == "/ok.csv" else b"gone"
        self.send_response(200 if self.path == "/ok.csv" else 404)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _private_job(ctx, sp: int, status="succeeded") -> Job:
    job = jobs.submit(ctx, "export_private", {"service_point": sp}, enqueue=False)
    token = jobs.claim(ctx, job.id)
    if status == "succeeded":
        key = f"exports/private/{sp}/{job.id}/data.zip"
        info = ctx.storage.write(key, f"raids of {sp}".encode())
        jobs.succeed(ctx, job.id, token, {}, [jobs.NewArtifact(name="data", key=key, filename="data.zip", size=info.size, md5=info.md5, sha256=info.sha256)])
    return jobs.get(ctx, job.id)


def test_service_point_page_shows_only_its_own_exports(app, ctx):
    generate(ctx, 4, service_points=[20000001, 20000002], seed=2)
    _row, raw = access.create_token(ctx, "service_point", service_point_id="20000001")
    mine = _private_job(ctx, 20000001)
    theirs = _private_job(ctx, 20000002)
    client = app.test_client()
    assert client.get("/pages/sp/").headers["Location"].endswith("/pages/sp/login")
    assert login(client, "exp_not-a-token", "/pages/sp/login").status_code == 401
    assert login(client, raw, "/pages/sp/login").status_code == 302
    html = client.get("/pages/sp/").get_data(as_text=True)
    assert mine.id in html and theirs.id not in html
    assert client.get("/pages/").status_code == 302  # a service point is no operator
    r = client.get(f"/pages/sp/jobs/{mine.id}/files/data")
    assert r.status_code == 302
    signed = urlsplit(r.headers["Location"])
    assert client.get(signed.path + "?" + signed.query).get_data() == b"raids of 20000001"
    assert client.get(f"/pages/sp/jobs/{theirs.id}/files/data").status_code == 404
    assert "pages.download" in audit_actions(ctx, mine.id)

    r = client.post("/pages/sp/", data={"csrf_token": csrf(client, "/pages/sp/"), "mode": "incremental", "format": "tar.gz"})
    assert r.status_code == 302
    with ctx.db.session() as s:
        new = s.scalars(select(Job).where(Job.kind == "export_private", Job.id.notin_([mine.id, theirs.id]))).one()
    assert new.params["service_point"] == 20000001 and new.params["mode"] == "incremental"
    assert new.requested_by.startswith("token:")
    assert client.post("/pages/sp/", data={"csrf_token": csrf(client, "/pages/sp/"), "mode": "weekly", "format": "zip"}).status_code == 400
    body = client.get("/pages/sp/jobs.json").get_json()
    assert {j["id"] for j in body["jobs"]} == {mine.id, new.id}
    with ctx.db.session() as s:
        assert s.scalars(select(AuditLog).where(AuditLog.job_id == new.id, AuditLog.action == "pages.create")).first() is not None


def test_job_creation_on_the_pages_shares_the_tokens_rate_limit(app, ctx):
    from exporter.ratelimit import as_rate

    generate(ctx, 2, service_points=[20000003], seed=3)
    ctx.settings = ctx.settings.replace(api_rate_limit=as_rate("API_RATE_LIMIT", "1/3600"))
    _row, raw = access.create_token(ctx, "service_point", service_point_id="20000003")
    client = app.test_client()
    login(client, raw, "/pages/sp/login")
    assert client.post("/pages/sp/", data={"csrf_token": csrf(client, "/pages/sp/"), "mode": "full", "format": "zip"}).status_code == 302
    r = client.post("/pages/sp/", data={"csrf_token": csrf(client, "/pages/sp/"), "mode": "incremental", "format": "zip"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "too many jobs" in r.get_data(as_text=True)
    _op, op_raw = access.create_token(ctx, "operator")
    operator = app.test_client()
    login(operator, op_raw)
    assert submit_form(operator, "synthetic", size="5", steps="1", delay="0").status_code == 302
    r = submit_form(operator, "synthetic", size="6", steps="1", delay="0")
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_login_attempts_are_throttled_per_address(app):
    client = app.test_client()
    statuses = [login(client, f"guess-{i}").status_code for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    r = login(client)  # even the right password waits
    assert r.status_code == 429 and "too many login attempts" in r.get_data(as_text=True)
    assert login(client, "exp_guess", "/pages/sp/login").status_code == 429


def test_a_csrf_token_opens_only_its_own_session(app):
    mine, theirs = app.test_client(), app.test_client()
    token = csrf(theirs)
    r = mine.post("/pages/login", data={"secret": PASSWORD, "csrf_token": token})  # another browser's token
    assert r.status_code == 400 and "did not come from this site" in r.get_data(as_text=True)
    assert mine.post("/pages/login", data={"secret": PASSWORD, "csrf_token": token + "x"}).status_code == 400
    assert mine.post("/pages/login", data={"secret": PASSWORD, "csrf_token": csrf(mine)}).status_code == 302
    operator = mine
    assert operator.post("/pages/jobs/x/cancel", data={"csrf_token": token}).status_code == 400  # logged in, still checked
    assert operator.post("/pages/jobs/x/cancel").status_code == 400


def test_the_json_api_is_not_asked_for_a_csrf_token(app, ctx):
    _row, raw = access.create_token(ctx, "operator")
    r = app.test_client().post("/api/v1/archives", json={"urls": ["https://data.example.org/a.csv"]}, headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code in (200, 201, 202), r.get_data(as_text=True)


def test_logging_out_or_changing_the_password_ends_the_session(app, ctx):
    client = app.test_client()
    assert login(client).status_code == 302
    assert client.get("/pages/").status_code == 200
    client.post("/pages/logout", data={"csrf_token": csrf(client, "/pages/")})
    assert client.get("/pages/").status_code == 302
    assert login(client).status_code == 302
    ctx.settings = ctx.settings.replace(operator_password="a-new-operator-password")
    assert client.get("/pages/").status_code == 302  # the old password's session is over
    assert login(client, "a-new-operator-password").status_code == 302 and client.get("/pages/").status_code == 200


def test_service_point_logout_and_revoked_token_end_its_session(app, ctx):
    row, raw = access.create_token(ctx, "service_point", service_point_id="20000001")
    client = app.test_client()
    assert login(client, raw, "/pages/sp/login").status_code == 302
    assert client.get("/pages/sp/").status_code == 200
    assert client.get("/pages/").status_code == 302 and client.get("/pages/jobs.json?ids=x").status_code == 401  # no operator
    client.post("/pages/sp/logout", data={"csrf_token": csrf(client, "/pages/sp/")})
    assert client.get("/pages/sp/").status_code == 302
    assert login(client, raw, "/pages/sp/login").status_code == 302
    access.revoke_token(ctx, row.id)
    assert client.get("/pages/sp/").status_code == 302 and client.get("/pages/sp/jobs.json").status_code == 401
    op_row, op_raw = access.create_token(ctx, "operator")
    operator = app.test_client()
    login(operator, op_raw)
    assert operator.get("/pages/sp/").status_code == 302  # an operator is no service point


def test_behind_https_the_cookie_is_secure_and_forms_must_come_from_this_site(ctx):
    ctx.settings = ctx.settings.replace(operator_password=PASSWORD, public_url="https://exporter.example.org")
    app = create_app(ctx)
    client = app.test_client()
    base = "https://exporter.example.org"
    html = client.get("/pages/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    data = {"secret": PASSWORD, "csrf_token": token}
    assert client.post("/pages/login", data=data, base_url=base).status_code == 400  # no Referer over https
    assert client.post("/pages/login", data=data, base_url=base, headers={"Referer": "https://evil.example/pages/login"}).status_code == 400
    r = client.post("/pages/login", data=data, base_url=base, headers={"Referer": base + "/pages/login"})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/pages/", base_url=base).status_code == 200


def test_over_plain_http_the_cookie_is_not_marked_secure(app):
    r = login(app.test_client())
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "Secure" not in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_post_without_this_sites_csrf_token_is_refused_on_the_operator_and_approver_pages(operator):
    for path in ("/pages/new/export_public", "/pages/collections/batches/1/approve", "/pages/collections/batches/1/decline"):
        r = operator.post(path, data={"reason": "no token"})
        assert r.status_code == 400, path
        assert "the form expired or did not come from this site" in r.get_data(as_text=True), path
