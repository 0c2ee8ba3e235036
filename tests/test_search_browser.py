"""The public search page in headless Chromium: search, see facets, narrow by one, page on."""

from __future__ import annotations

import os
import threading

import pytest
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from exporter.discovery import index
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, future, handle, record, save
from web import create_app

from .conftest import free_port
from .test_browser import ARGS, CHROMIUM, WAIT_MS


@pytest.fixture
def site(pg_ctx):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    ctx = pg_ctx
    port = free_port()
    ctx.settings = ctx.settings.replace(public_url=f"http://127.0.0.1:{port}")
    server = make_server("127.0.0.1", port, create_app(ctx), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ctx, f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(10)


def test_a_visitor_searches_narrows_by_agency_and_pages(site):
    ctx, base = site
    save(ctx, *[record(n, title=f"Reef survey number {n}") for n in range(1, 24)])
    save(ctx, record(30, title="Reef survey abroad", agency=OTHER_AGENCY, sp=OTHER_SP), record(31, access="embargoed", expiry=future(), title="Reef secret", secret="x"))
    index.refresh(ctx)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(base + "/search")
            page.get_by_role("searchbox", name="Search").fill('reef "survey number" OR abroad')
            page.get_by_role("button", name="Search").click()
            expect(page.locator("#total")).to_have_text("24 results")
            expect(page.locator("li.hit")).to_have_count(20)
            assert "secret" not in page.content().lower()
            page.locator('[data-facet="agency"] a', has_text="02stey378").click()
            expect(page.locator("#total")).to_have_text("1 result")
            expect(page.locator("li.hit a.title")).to_have_attribute("href", handle(30))
            page.locator('[data-facet="agency"] a[aria-label="remove filter"]').click()
            page.get_by_role("link", name="Next").click()
            expect(page.locator("li.hit")).to_have_count(4)
            page.get_by_role("searchbox", name="Search").fill("reef OR")
            page.get_by_role("button", name="Search").click()
            expect(page.locator("#search-error")).to_contain_text("OR needs a term")
        finally:
            browser.close()
