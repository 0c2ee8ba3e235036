"""The OpenAPI document and the blueprint describe the same API."""

# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
from __future__ import annotations

import re

from web.api.openapi import document

from .api_support import api, fake_exports  # noqa: F401

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.endpoint.startswith("api.docs."):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", lambda m: "{" + m.group(1) + "}", rule.rule.removeprefix("/api/v1"))
        for method in rule.methods - IGNORED_METHODS:
            out.add((method.lower(), path))
    return out


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, ops in document()["paths"].items() for method in ops}


def _normalise(pairs):
    return {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p in pairs}


def test_every_route_is_documented_and_every_documented_path_is_a_route(api):
    routes, documented = _normalise(_routes(api.app)), _normalise(_documented())
    assert routes - documented == set(), "routes missing from openapi.py"
    assert documented - routes == set(), "documented paths without a route"


def test_path_parameters_are_named_as_in_the_document(api):
    for method, path in _documented():
        for name in re.findall(r"\{([^}]+)\}", path):
            op = document()["paths"][path][method]
            assert any(p["name"] == name and p["in"] == "path" for p in op.get("parameters", [])), (method, path, name)


def test_served_document_is_valid_openapi(api):
    import schemathesis

    r = api.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json
    assert doc["openapi"].startswith("3.") and doc["servers"][0]["url"].endswith("/api/v1")
    schema = schemathesis.openapi.from_dict(doc)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == len(_documented())


def test_every_operation_documents_its_json_errors():
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path, code)
            if op.get("security", [{}]) != [] and op.get("security") != [{}, {"bearerAuth": []}]:
                assert "401" in op["responses"], (method, path)


def test_interactive_docs_load_only_from_this_server(api):
    """The docs page and every file it references answer 200 from the app itself: no CDN."""
    from html.parser import HTMLParser
    from urllib.parse import urlsplit

    class Refs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.urls: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    r = api.client.get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    parser = Refs()
    parser.feed(page)
    assert len(parser.urls) >= 4
    spec = re.search(r'url: "([^"]+)"', page).group(1)
    for url in [*parser.urls, spec]:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/api/v1/"), url
        answer = api.client.get(url)
        assert answer.status_code == 200 and answer.data, url
    assert "SwaggerUIBundle" in api.client.get(next(u for u in parser.urls if u.endswith("swagger-ui-bundle.js"))).get_data(as_text=True)
    assert "://" not in re.sub(r"https?://(www\.)?w3\.org[^\"']*", "", page)


def test_docs_serve_only_the_listed_assets(api):
    assert api.client.get("/api/v1/docs/assets/index.html").status_code == 404
    assert api.client.get("/api/v1/docs/assets/..%2Fsetup.py").status_code == 404
