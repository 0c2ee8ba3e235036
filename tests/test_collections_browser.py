"""The approver's page in headless Chromium (Debian's chromium): an approver token logs in, sees the
batch's thumbnails (quarantined images, served to logged-in approvers only), counts, the refused file
with its reason and the overlap; a decline without a reason is refused; then approves, and the
published files answer over HTTP."""

from __future__ import annotations

import os
import re

import pytest
import requests
from playwright.sync_api import expect

from exporter import access
from exporter.collections import batches, projects, views

from .collections_helpers import LiveApp, make_fits, make_small_png, make_tiff16, run_sent
from .test_browser import CHROMIUM, browser  # noqa: F401 - the Chromium fixture

WAIT_MS = 30_000


def test_an_approver_sees_the_thumbnails_and_approves_the_batch(pg_ctx, tmp_path, browser):  # noqa: F811
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    ctx = pg_ctx
    app = LiveApp(ctx)
    roots = tmp_path / "sources"
    ctx.settings = ctx.settings.replace(public_url=app.url, collections_source_roots=str(roots), collections_settle_seconds=0)
    ctx.__dict__.pop("storage", None)
    app.start()
    try:
        earlier = roots / "earlier"
        earlier.mkdir(parents=True)
        make_fits(earlier / "m51.fits", obj="M51")
        projects.add_project(ctx, "earlier", str(earlier), "first@example.org")
        first = batches.poll_project(ctx, "earlier")
        run_sent(ctx)
        batches.approve(ctx, first.batch_id, by="someone")
        run_sent(ctx)

        folder = roots / "zoo"
        folder.mkdir()
        make_fits(folder / "m51-again.fits", obj="M51", seed=7)
        make_tiff16(folder / "field.tiff")
        make_small_png(folder / "star.png", 3)
        (folder / "readme.txt").write_text("notes")
        projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
        polled = batches.poll_project(ctx, "zoo")
        run_sent(ctx)
        _, raw = access.create_token(ctx, "approver", name="Alice")
        _, reader = access.create_token(ctx, "read_only", name="reader")

        image = views.get_batch(ctx, polled.batch_id)["files"][0]["id"]
        assert requests.get(f"{app.url}/pages/collections/files/{image}/image", allow_redirects=False, timeout=10).status_code == 302  # no login, no image

        page = browser.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{app.url}/pages/collections/batches/{polled.batch_id}")
        expect(page).to_have_url(f"{app.url}/pages/login?next=/pages/collections/batches/{polled.batch_id}")
        page.fill("input[name=secret]", reader)
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("not a valid operator or approver token")
        page.fill("input[name=secret]", raw)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text(f"Batch {polled.batch_id} of zoo")
        expect(page.locator("#state")).to_have_text("awaiting_approval")
        thumbs = page.locator("#thumbs img")
        expect(thumbs).to_have_count(3)
        page.wait_for_function("() => [...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)")
        expect(page.locator("#expires")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))  # not an ISO string with microseconds
        expect(page.locator("#thumbs")).to_contain_text(re.compile(r"\d{1,3},\d{3} bytes"))
        expect(page.locator("#refused")).to_contain_text("readme.txt")
        expect(page.locator("#refused")).to_contain_text("unsupported")
        expect(page.locator("#overlap")).to_contain_text("earlier")
        expect(page.locator("#overlap")).to_contain_text("object_id")

        page.locator("#decline-form textarea[name=reason]").evaluate("t => t.removeAttribute('required')")
        page.click("#decline")
        expect(page.locator("#error")).to_contain_text("needs a reason")
        expect(page.locator("#state")).to_have_text("awaiting_approval")

        page.fill("#approve-form textarea[name=note]", "looks fine")
        page.click("#approve")
        expect(page.locator("#done")).to_contain_text("approved")
        expect(page.locator("#decisions")).to_contain_text("looks fine")
        expect(page.locator("#decisions")).to_contain_text("Alice")
        run_sent(ctx)
        page.reload()
        expect(page.locator("#state")).to_have_text("published")
        manifest = page.locator("#manifest").get_attribute("href")
        assert requests.get(manifest, timeout=10).status_code == 200
    finally:
        app.stop()
