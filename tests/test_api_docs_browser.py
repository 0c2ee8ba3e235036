"""/api/v1/docs in headless Chromium: Swagger UI renders the API's operations with every
request answered by our own server (any other host is refused and recorded)."""

# ruff: noqa: F811  (pytest fixtures imported from test_browser are parameters here)
from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from .test_browser import WAIT_MS, browser, served  # noqa: F401


def test_docs_page_renders_the_operations_from_local_files_only(served, browser):
    _, base, _ = served
    page = browser.new_page()
    requested, elsewhere = [], []

    def route(r):
        url = r.request.url
        requested.append(url)
        if urlsplit(url).netloc != urlsplit(base).netloc:
            elsewhere.append(url)
            return r.abort()
        return r.continue_()

    page.route("**/*", route)
    page.goto(f"{base}/api/v1/docs")
    expect(page.locator(".opblock-summary-path", has_text="/exports/{jobId}/cancel")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".info .title")).to_contain_text("Exporter API")
    assert elsewhere == []
    assert f"{base}/api/v1/openapi.json" in requested and any(u.endswith("swagger-ui-bundle.js") for u in requested)
