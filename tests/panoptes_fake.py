"""A local server that speaks the part of Zooniverse's Panoptes API the collections family uses.

As Panoptes does (app/controllers/api/v1/subject_set_imports_controller.rb, its create schema and
serializer): a bearer token (401 without, 403 with a wrong one), `Accept: application/vnd.api+json;
version=1` (406 otherwise), JSON bodies only as `application/json` (415), the create schema
(`subject_set_imports: {source_url, links: {subject_set}}`, nothing else: 422), the subject set must
exist (404). Creating an import downloads the manifest from `source_url` and counts its rows
(CountManifestRows: 422 over 10,000), then imports in a thread: each row's `location:*` URLs are
fetched (a subject whose image is not a 200 image/* counts in `failed_count`), subjects are
upserted by `external_id`, and `imported_count` counts rows done. Every request is recorded.
Nothing here talks to the real Zooniverse.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from .http_servers import _Base

TOKEN = "panoptes-test-token"
ACCEPT = "application/vnd.api+json; version=1"
ROW_LIMIT = 10_000


class Reply(Exception):
    def __init__(self, status: int, body: Any = None):
        self.status, self.body = status, body


def error(status: int, message: str) -> Reply:
    return Reply(status, {"errors": [{"message": message}]})


class FakePanoptes(_Base):
    def __init__(self, token: str = TOKEN, project_ids: tuple[str, ...] = ("1234",)):
        self.token = token
        self.lock = threading.RLock()
        self.projects = set(project_ids)
        self.subject_sets: dict[str, dict[str, Any]] = {}
        self.imports: dict[str, dict[str, Any]] = {}
        self.subjects: dict[tuple[str, str], dict[str, Any]] = {}  # (subject set, external id) -> subject
        self.requests: list[dict[str, Any]] = []
        self.fetched: list[tuple[str, int, str]] = []  # (url, status, content type) of every location fetched
        self.next_id = 100
        self.hold = threading.Event()  # set: imports go on; clear: they wait (a slow import)
        self.hold.set()
        self.lose: list[str] = []  # "METHOD /path": do the work, then answer 502 (the answer lost on the way), once each
        self.threads: list[threading.Thread] = []
        super().__init__(PanoptesHandler)

    @property
    def api(self) -> str:
        return self.url + "/api"

    def add_subject_set(self, project_id: str, name: str = "existing") -> str:
        with self.lock:
            set_id = self._id()
            self.subject_sets[set_id] = {"id": set_id, "display_name": name, "links": {"project": project_id}}
            return set_id

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]

    def wait_imports(self, timeout: float = 30) -> None:
        for t in self.threads:
            t.join(timeout)

    # -- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["api"]:
            raise error(404, "not found")
        parts = parts[1:]
        if parts == ["subject_sets"] and method == "POST":
            attrs = (body or {}).get("subject_sets") or {}
            project = str((attrs.get("links") or {}).get("project") or "")
            if project not in self.projects:
                raise error(422, "Project must exist")
            set_id = self._id()
            self.subject_sets[set_id] = {"id": set_id, "display_name": attrs.get("display_name"), "links": {"project": project}}
            return 201, {"subject_sets": [self.subject_sets[set_id]]}
        if parts == ["subject_sets"] and method == "GET":
            want_project, want_name = query.get("project_id", [None])[0], query.get("display_name", [None])[0]
            found = [s for s in self.subject_sets.values() if (want_project is None or s["links"]["project"] == want_project) and (want_name is None or s["display_name"] == want_name)]
            return 200, {"subject_sets": found}
        if parts == ["subject_set_imports"] and method == "POST":
            return 201, {"subject_set_imports": [self.create_import(body)]}
        if parts == ["subject_set_imports"] and method == "GET":
            want = query.get("subject_set_id", [None])[0]
            return 200, {"subject_set_imports": [self.view(i) for i in self.imports.values() if want is None or i["subject_set"] == want]}
        if len(parts) == 2 and parts[0] == "subject_set_imports" and method == "GET":
            imp = self.imports.get(parts[1])
            if imp is None:
                raise error(404, f"Could not find subject_set_imports with id='{parts[1]}'")
            return 200, {"subject_set_imports": [self.view(imp)]}
        raise error(404, "not found")

    def create_import(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) != {"subject_set_imports"}:
            raise error(422, "body must be {subject_set_imports: {...}}")
        attrs = body["subject_set_imports"]
        if not isinstance(attrs, dict) or set(attrs) - {"source_url", "links"} or "links" not in attrs:
            raise error(422, f"The property '#/' contains additional properties or misses links: {sorted(attrs) if isinstance(attrs, dict) else attrs}")
        links = attrs["links"]
        if not isinstance(links, dict) or set(links) != {"subject_set"}:
            raise error(422, "links must hold subject_set only")
        set_id = str(links["subject_set"])
        if set_id not in self.subject_sets:
            raise error(404, f"Could not find subject_set with id='{set_id}'")
        url = attrs.get("source_url") or ""
        if not url.startswith(("http://", "https://")):
            raise error(422, "Source url is malformed")
        resp = requests.get(url, timeout=10)
        if resp.status_code != 200:
            raise error(422, f"Failed to download manifest: {url}")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        if len(rows) > ROW_LIMIT:
            raise error(422, f"Manifest row count ({len(rows)}) exceeds the limit ({ROW_LIMIT}) and can not be imported")
        imp_id = self._id()
        imp = {"id": imp_id, "source_url": url, "subject_set": set_id, "manifest_count": len(rows), "imported_count": 0, "failed_count": 0, "failed_uuids": []}
        self.imports[imp_id] = imp
        t = threading.Thread(target=self._import, args=(imp, rows), daemon=True)
        self.threads.append(t)
        t.start()
        return self.view(imp)

    def _import(self, imp: dict[str, Any], rows: list[dict[str, str]]) -> None:
        self.hold.wait(60)
        for row in rows:
            locations, ok = [], True
            for header, value in row.items():
                if header.startswith("location:"):
                    resp = requests.get(value, timeout=10)
                    ctype = resp.headers.get("Content-Type", "")
                    self.fetched.append((value, resp.status_code, ctype))
                    ok = ok and resp.status_code == 200 and ctype.startswith("image/")
                    locations.append({ctype: value})
            metadata = {h.split(":", 1)[1]: v for h, v in row.items() if h.startswith("metadata:")}
            with self.lock:
                if ok:
                    self.subjects[(imp["subject_set"], row["external_id"])] = {"locations": locations, "metadata": metadata}
                else:
                    imp["failed_count"] += 1
                    imp["failed_uuids"].append(row["external_id"])
                imp["imported_count"] += 1

    def view(self, imp: dict[str, Any]) -> dict[str, Any]:
        progress = min(1.0, imp["imported_count"] / imp["manifest_count"]) if imp["manifest_count"] else 0.0
        return {
            "id": imp["id"], "href": f"/subject_set_imports/{imp['id']}", "source_url": imp["source_url"], "imported_count": imp["imported_count"],
            "manifest_count": imp["manifest_count"], "failed_count": imp["failed_count"], "progress": progress, "links": {"subject_set": imp["subject_set"]},
        }


class PanoptesHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _serve(self, method: str) -> None:
        owner: FakePanoptes = self.server.owner
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = {"method": method, "path": url.path, "query": url.query, "headers": dict(self.headers.items()), "body": raw}
        try:
            auth = self.headers.get("Authorization")
            if not auth:
                raise error(401, "not authorized")
            if auth != f"Bearer {owner.token}":
                raise error(403, "bad token")
            if self.headers.get("Accept") != ACCEPT:
                raise error(406, f"Accept must be {ACCEPT}")
            body = None
            if raw:
                if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                    raise error(415, "Content-Type must be application/json")
                body = json.loads(raw)
            with owner.lock:
                status, payload = owner.handle(method, url.path, parse_qs(url.query), body)
                if f"{method} {url.path}" in owner.lose:
                    owner.lose.remove(f"{method} {url.path}")
                    raise error(502, "Bad Gateway (the answer was lost on demand)")
        except Reply as reply:
            status, payload = reply.status, reply.body
        record["status"] = status
        with owner.lock:
            owner.requests.append(record)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
