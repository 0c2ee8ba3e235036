"""The OpenAPI document generated from the schemas covers every route of the blueprint and is valid OpenAPI 3."""

# ruff: noqa: F811  (pytest fixtures imported from api_support are parameters here)
from __future__ import annotations

import re

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


def document(api) -> dict:
    r = api.client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.is_json
    return r.json


def operations(doc: dict):
    """(method, path, operation) of the document; `parameters` beside the methods are shared by them."""
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method != "parameters":
                yield method, path, {**op, "parameters": ops.get("parameters", []) + op.get("parameters", [])}


def test_every_route_is_documented_and_every_documented_path_is_a_route(api):
    routes = _routes(api.app)
    documented = {(method, path) for method, path, _ in operations(document(api))}
    assert routes, "no routes under /api/v1"
    assert routes - documented == set(), "routes missing from the document: give the view its schemas"
    assert documented - routes == set(), "documented operations without a route"


def test_path_parameters_are_named_as_in_the_document(api):
    for method, path, op in operations(document(api)):
        for name in re.findall(r"\{([^}]+)\}", path):
            assert any(p["name"] == name and p["in"] == "path" and p["required"] for p in op["parameters"]), (method, path, name)


def test_served_document_is_valid_openapi(api):
    import schemathesis
    from openapi_spec_validator import validate

    doc = document(api)
    assert doc["openapi"].startswith("3.") and doc["servers"][0]["url"].endswith("/api/v1")
    validate(doc)  # raises on anything OpenAPI 3.0 does not allow
    schema = schemathesis.openapi.from_dict(doc)
    assert len([op.ok() for op in schema.get_all_operations()]) == len(list(operations(doc)))


def test_the_document_describes_requests_and_answers_from_the_schemas(api):
    doc = document(api)
    schemas = doc["components"]["schemas"]
    assert schemas["ExportRequest"]["additionalProperties"] is False  # unknown fields are refused
    assert schemas["ExportRequest"]["required"] == ["kind"]  # then scope (public, private) or layer and roi (tiles)
    assert {"scope", "layer", "roi"} <= set(schemas["ExportRequest"]["properties"])
    assert schemas["CreatedJob"]["properties"]["isDuplicated"] == {"type": "boolean", "description": schemas["CreatedJob"]["properties"]["isDuplicated"]["description"]}
    post = doc["paths"]["/exports"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ExportRequest"}
    assert {"200", "201", "400", "401", "403", "413", "429", "507"} <= set(post["responses"])
    listed = {p["name"]: p["schema"] for p in doc["paths"]["/exports"]["get"]["parameters"]}
    assert listed["limit"] == {"type": "integer", "default": 20, "minimum": 1, "maximum": 200}
    [job_id] = doc["paths"]["/exports/{jobId}"]["parameters"]
    assert re.fullmatch(job_id["schema"]["pattern"].strip("^$"), "a" * 64) and not re.fullmatch(job_id["schema"]["pattern"].strip("^$"), "a" * 65)


def test_every_operation_documents_its_json_errors(api):
    for method, path, op in operations(document(api)):
        assert "400" in op["responses"], (method, path)  # every query string is checked
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path, code)
        if op.get("security") != []:
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


def test_the_domain_imports_neither_flask_nor_the_schema_libraries(project_root):
    import ast

    web_only = {"flask", "flask_smorest", "marshmallow", "webargs", "apispec", "web"}
    for path in (project_root / "exporter").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not {n.split(".")[0] for n in names} & web_only, f"{path} imports {names}"
