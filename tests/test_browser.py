"""The operator and service-point pages end to end in headless Chromium (Debian's chromium).

The app runs on a real werkzeug server thread; jobs run in background threads through
exporter.runner.run_job, held at a gate until the page has shown them pending, so the
test watches the page move them on by itself.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from exporter import access, runner
from exporter.raids import registry
from exporter.raids.generator import generate
from web import create_app

from .conftest import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "browser-test-password"
AGENCY = "https://ror.org/038sjwq14"
AGENCY_NAME = "Australian Research Data Commons"
WAIT_MS = 30_000


class Gate:
    """An enqueue that runs each job in a thread once the test opens the gate."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.open = threading.Event()
        self.threads: list[threading.Thread] = []

    def enqueue(self, task: str, job_id: str, queue: str) -> None:
        if queue == "webhooks":
            return

        def run():
            if self.open.wait(60):
                runner.run_job(self.ctx, job_id)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def release(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.open.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture
def served(pg_ctx, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(public_url=base, operator_password=PASSWORD)
    ctx.__dict__.pop("storage", None)  # download URLs must name this server
    gate = Gate(ctx)
    ctx.enqueue = gate.enqueue
    server = make_server("127.0.0.1", port, create_app(ctx), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ctx, base, gate
    finally:
        gate.close()
        server.shutdown()
        thread.join(10)


@pytest.fixture
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def name_agency(ctx, ror: str = AGENCY, name: str = AGENCY_NAME) -> None:
    with ctx.db.session() as s:
        registry.ensure_agency(s, ror, name)


def log_in(page, base: str) -> None:
    page.goto(base + "/pages/login")
    page.fill("input[name=secret]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")


def archive_lines(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as zf:
        return [json.loads(line) for line in zf.read("raids.jsonl").decode().splitlines()]


def test_operator_starts_a_public_export_watches_it_finish_and_downloads_it(served, browser, tmp_path):
    ctx, base, gate = served
    name_agency(ctx)
    generate(ctx, 25, agency=AGENCY, service_points=[20000000, 20000001], seed=5)
    page = browser.new_context(accept_downloads=True).new_page()
    page.set_default_timeout(WAIT_MS)

    page.goto(base + "/")
    expect(page).to_have_url(base + "/pages/login?next=/pages/")
    page.fill("input[name=secret]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("wrong password")
    page.fill("input[name=secret]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("#flower-link")).to_have_attribute("href", ctx.settings.flower_url)

    page.click("text=New job")
    form = page.locator("#form-public")
    form.locator("select[name=agency]").select_option(label=f"{AGENCY_NAME} (038sjwq14)")  # a short list: a plain <select>
    form.locator("select[name=mode]").select_option("full")
    form.locator("select[name=format]").select_option("zip")
    form.locator("input[name=description]").fill("from chromium")
    form.locator("button[type=submit]").click()

    expect(page.locator("h1")).to_contain_text("export_public job")
    expect(page.locator("#job .status")).to_have_text("pending")
    assert '"agency": "038sjwq14"' in page.locator("#params").inner_text()
    expect(page.locator("#scope")).to_have_text(f"{AGENCY_NAME} (038sjwq14)")
    gate.release()
    expect(page.locator("#job .status")).to_have_text("succeeded")  # the page follows the job by itself
    expect(page.locator("#job .pct")).to_have_text("100%")
    links = page.locator("#artifacts a.download")
    expect(links.first).to_be_visible()
    names = links.all_inner_texts()
    archive_name = next(n for n in names if n.endswith(".zip"))
    assert "manifest.json" in names

    with page.expect_download() as dl:
        page.click(f"#artifacts a.download:text-is('{archive_name}')")
    saved = tmp_path / archive_name
    dl.value.save_as(saved)
    records = archive_lines(saved)
    assert len(records) == 25
    assert len({r["identifier"]["id"] for r in records}) == 25
    full = [r for r in records if "title" in r]
    assert full and all(r["identifier"]["registrationAgency"]["id"] == AGENCY for r in full)

    page.click("text=Jobs")
    row = page.locator("#jobs tbody tr", has_text="from chromium")  # above it: the dump publication the export submitted
    expect(row.locator(".status")).to_have_text("succeeded")
    expect(page.locator("#jobs tbody tr", has_text="publish_dump")).to_have_count(1)
    expect(row.locator(".scope")).to_have_text(f"Registration agency {AGENCY_NAME} (038sjwq14)")


def test_operator_finds_an_agency_among_hundreds_by_typing_part_of_its_name(served, browser):
    ctx, base, gate = served
    with ctx.db.session() as s:
        for i in range(300):
            registry.ensure_agency(s, f"https://ror.org/0a{i:07d}", f"Agency number {i:03d}")
    name_agency(ctx)
    generate(ctx, 5, agency=AGENCY, service_points=[20000000], seed=7)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    log_in(page, base)
    page.goto(base + "/pages/new")
    form = page.locator("#form-public")
    box = form.locator("input[name=agency]")
    expect(box).to_have_attribute("placeholder", "type part of a name or id (301 registered)")

    box.click()
    expect(form.locator("[role=option]")).to_have_count(20)  # browsing: the first names, and a note that more match
    expect(form.locator(".picker-note")).to_contain_text("More match")
    box.press_sequentially("number 12")
    expect(form.locator("[role=option]")).to_have_count(10)
    expect(form.locator("[role=option]").first).to_have_text("Agency number 120 (0a0000120)")
    box.fill("")
    box.press_sequentially("research da")
    options = form.locator("[role=option]")
    expect(options).to_have_count(1)
    expect(options.first).to_have_text(f"{AGENCY_NAME} (038sjwq14)")
    expect(box).to_have_attribute("aria-expanded", "true")
    box.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    box.press("Enter")  # picks the suggestion; does not submit the form
    expect(box).to_have_value("038sjwq14")
    expect(form.locator(".picker-chosen")).to_have_text(f"{AGENCY_NAME} (038sjwq14)")
    expect(form.locator(".picker-list")).to_be_hidden()
    expect(page).to_have_url(base + "/pages/new")

    form.locator("select[name=format]").select_option("zip")
    form.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_contain_text("export_public job")
    expect(page.locator("#scope")).to_have_text(f"{AGENCY_NAME} (038sjwq14)")

    page.goto(base + "/pages/new")  # the mouse, and a name nobody has
    box = page.locator("#form-public input[name=agency]")
    box.press_sequentially("AGENCY NUMBER 299")
    page.locator("#form-public [role=option]", has_text="0a0000299").click()
    expect(box).to_have_value("0a0000299")
    box.fill("nobody registered this")
    expect(page.locator("#form-public .picker-note")).to_have_text("Nothing registered matches “nobody registered this”.")
    page.locator("#form-public button[type=submit]").click()
    expect(page.locator("#form-public .form-error")).to_have_text("Registration agency: no agency 'nobody registered this' is registered; pick one from the list")
    expect(page.locator("#form-public input[name=agency]")).to_have_class("field-error")
    gate.release()


def test_dashboard_progress_bars_move_live(served, browser):
    ctx, base, gate = served
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/pages/login")
    page.fill("input[name=secret]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(base + "/pages/new")
    form = page.locator("#form-synthetic")
    form.locator("input[name=size]").fill("4000")
    form.locator("input[name=steps]").fill("4")
    form.locator("input[name=delay]").fill("0.2")
    form.locator("button[type=submit]").click()
    expect(page.locator("#job .status")).to_have_text("pending")
    job_id = page.locator("#job").get_attribute("data-job-id")

    page.goto(base + "/pages/")
    row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".status")).to_have_text("pending")
    loaded_at = page.evaluate("performance.timeOrigin")
    gate.release()
    expect(row.locator(".status")).to_have_text("succeeded")
    expect(row.locator(".pct")).to_have_text("100%")
    assert row.locator("progress").evaluate("el => el.value") == 100
    assert page.evaluate("performance.timeOrigin") == loaded_at  # updated in place, not reloaded


def test_service_point_requests_its_private_export_and_downloads_it(served, browser, tmp_path):
    ctx, base, gate = served
    name_agency(ctx)
    with ctx.db.session() as s:
        registry.ensure_service_point(s, 20000001, AGENCY, "ARDC service desk")
    generate(ctx, 12, agency=AGENCY, service_points=[20000000, 20000001], seed=6)
    _row, raw = access.create_token(ctx, "service_point", service_point_id="20000001", name="sp one")
    page = browser.new_context(accept_downloads=True).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/pages/sp/")
    expect(page).to_have_url(base + "/pages/sp/login")
    page.fill("input[name=secret]", raw)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Private exports of ARDC service desk (20000001)")
    expect(page.locator("#sp-agency")).to_have_text(f"A service point of {AGENCY_NAME} (038sjwq14)")
    page.locator("#request-export select[name=format]").select_option("zip")
    page.click("#request-export button[type=submit]")
    row = page.locator("#sp-jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("pending")
    gate.release()
    link = page.locator("#sp-jobs a.download", has_text=".zip")
    expect(link).to_be_visible()
    with page.expect_download() as dl:
        link.click()
    saved = tmp_path / "private.zip"
    dl.value.save_as(saved)
    records = archive_lines(saved)
    assert records and all(r["identifier"]["owner"]["servicePoint"] == 20000001 for r in records)
    page.goto(base + "/pages/")
    expect(page).to_have_url(base + "/pages/login?next=/pages/")  # a service point is no operator
