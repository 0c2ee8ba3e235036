"""A local server that speaks Zenodo's records API (InvenioRDM's JSON), strictly enough to catch mistakes.

It enforces what the real one does and what the publish job relies on:
- the token (`Authorization: Bearer`; 401 without, 403 with a wrong one), JSON bodies only as
  `application/json` and file contents only as `application/octet-stream` (415 otherwise);
- drafts and versions: `POST /records/{id}/versions` only on the latest published version;
  while a draft of the concept is open it answers with that draft, as InvenioRDM's service does
  (or, `refuse_second_version`, refuses); `GET /records/{id}/versions/latest` redirects (302)
  to the latest version, as InvenioRDM's resource does; a new version's draft has no files and no
  `publication_date` or `version`; publishing needs the required metadata and every file
  committed, at most 100 files and 50 GB;
- md5 checksums: a commit answers `checksum: md5:<hex>` of the bytes received;
- on demand: any status for matching requests (`fail`), answered before (or, `after=True`,
  instead of the answer to) the request's work; a hook called when a file is committed.
DOIs use the sandbox prefix 10.5072 unless told otherwise; nothing here talks to the real Zenodo.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .http_servers import _Base

TOKEN = "zenodo-test-token"
MAX_FILES = 100
MAX_BYTES = 50 * 10**9
REQUIRED = ("resource_type", "title", "creators", "publication_date")


@dataclass
class Failure:
    status: int
    method: str | None = None
    path_contains: str | None = None
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    after: bool = False  # do the work, then answer this instead (an answer lost on the way)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and (self.method in (None, method)) and (self.path_contains is None or self.path_contains in path)


class Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def error(status: int, message: str, errors: list[dict] | None = None) -> Reply:
    body: dict[str, Any] = {"status": status, "message": message}
    if errors:
        body["errors"] = errors
    return Reply(status, body)


class FakeZenodo(_Base):
    """`records` holds every draft and record by id; `calls` every (method, path, status); `uploads` counts PUTs of content per (record, key)."""

    def __init__(self, token: str = TOKEN, doi_prefix: str = "10.5072"):
        self.token, self.prefix = token, doi_prefix
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, list[str]] = {}  # parent id -> its records' ids, oldest first
        self.parent_dois: dict[str, str] = {}
        self.next_id = 1000
        self.failures: list[Failure] = []
        self.calls: list[tuple[str, str, int]] = []
        self.times: list[tuple[str, str, float]] = []
        self.uploads: Counter = Counter()
        self.on_commit: Callable[[str, str, dict], None] | None = None
        self.quota: tuple[int, float] | None = None  # (remaining, reset epoch) sent as X-RateLimit-* headers
        self.hide_drafts_from_search = False  # /user/records shows no draft, as a search index not yet refreshed
        self.refuse_second_version = False  # a `versions` call while a draft is open: answered with that draft (InvenioRDM), or refused
        super().__init__(ZenodoHandler)

    @property
    def api(self) -> str:
        return self.url + "/api"

    def fail(self, status: int, method: str | None = None, path_contains: str | None = None, times: int = 1, headers: dict[str, str] | None = None, body: dict | None = None, after: bool = False) -> Failure:
        failure = Failure(status, method, path_contains, times, headers or {}, body, after)
        with self.lock:
            self.failures.append(failure)
        return failure

    # -- what tests look at -----------------------------------------------------------------

    def count(self, method: str, contains: str = "", exact: str | None = None) -> int:
        return sum(1 for m, p, _ in self.calls if m == method and (p == exact if exact is not None else contains in p))

    def drafts(self) -> list[dict]:
        return [r for r in self.records.values() if not r["published"]]

    def published(self) -> list[dict]:
        return [r for r in self.records.values() if r["published"]]

    def files_of(self, record_id: str) -> dict[str, dict]:
        return self.records[record_id]["files"]

    # -- the records API --------------------------------------------------------------------

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes, content_type: str) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] != ["api"]:
            raise error(404, "not found")
        parts = parts[1:]
        json_body = None
        if body and not (len(parts) == 6 and parts[5] == "content"):  # records/{id}/draft/files/{key}/content
            if content_type.split(";")[0].strip() != "application/json":
                raise error(415, f"a request body must be application/json, not {content_type or 'nothing'}")
            json_body = json.loads(body)
        if parts == ["records"] and method == "POST":
            return 201, self.create(json_body or {})
        if parts == ["user", "records"] and method == "GET":
            return 200, self.search(query)
        if len(parts) < 2 or parts[0] != "records":
            raise error(404, "not found")
        rec = self.records.get(parts[1])
        if rec is None:
            raise error(404, "The persistent identifier does not exist.")
        rest = parts[2:]
        if rest == [] and method == "GET":
            if not rec["published"]:
                raise error(404, "The persistent identifier is not registered.")
            return 200, self.view(rec)
        if rest == ["versions"] and method == "POST":
            return 201, self.new_version(rec)
        if rest == ["versions", "latest"] and method == "GET":
            latest = [r for r in (self.records[i] for i in self.parents[rec["parent"]]) if r["published"]]
            if not latest:
                raise error(404, "no published version")
            raise Reply(302, None, {"Location": self.view(latest[-1])["links"]["self"]})  # InvenioRDM redirects to it
        if rec["published"]:
            raise error(404, "This record has no draft.")
        if rest == ["draft"]:
            if method == "GET":
                return 200, self.view(rec)
            if method == "PUT":
                rec["metadata"] = dict((json_body or {}).get("metadata") or {})
                rec["access"] = (json_body or {}).get("access") or rec["access"]
                return 200, self.view(rec)
            if method == "DELETE":
                del self.records[rec["id"]]
                self.parents[rec["parent"]].remove(rec["id"])
                return 204, None
        if rest == ["draft", "actions", "publish"] and method == "POST":
            return 202, self.publish(rec)
        if rest[:2] == ["draft", "files"]:
            return self.files(rec, method, rest[2:], json_body, body, content_type)
        raise error(405, f"{method} is not allowed here")

    def create(self, data: dict) -> dict:
        rid, parent = self._new_id(), self._new_id()
        self.parents[parent] = [rid]
        self.records[rid] = {"id": rid, "parent": parent, "published": False, "metadata": dict(data.get("metadata") or {}), "access": data.get("access") or {}, "files": {}, "doi": None}
        return self.view(self.records[rid])

    def new_version(self, rec: dict) -> dict:
        family = [self.records[i] for i in self.parents[rec["parent"]]]
        if not rec["published"]:
            raise error(400, "A new version can only be made of a published record.")
        open_draft = next((r for r in family if not r["published"]), None)
        if open_draft is not None:
            if self.refuse_second_version:
                raise error(400, "A draft of a new version already exists for this record; publish or discard it first.")
            return self.view(open_draft)  # InvenioRDM's service answers with the draft already open, whoever opened it
        if [r for r in family if r["published"]][-1]["id"] != rec["id"]:
            raise error(400, "A new version can only be made of the latest version.")
        metadata = {k: v for k, v in rec["metadata"].items() if k not in ("publication_date", "version")}
        rid = self._new_id()
        self.records[rid] = {"id": rid, "parent": rec["parent"], "published": False, "metadata": metadata, "access": dict(rec["access"]), "files": {}, "doi": None}
        self.parents[rec["parent"]].append(rid)
        return self.view(self.records[rid])

    def publish(self, rec: dict) -> dict:
        errors = [{"field": f"metadata.{k}", "messages": ["Missing data for required field."]} for k in REQUIRED if not rec["metadata"].get(k)]
        files = rec["files"].values()
        if not files:
            errors.append({"field": "files.enabled", "messages": ["Missing uploaded files. To disable files for this record please mark it as metadata-only."]})
        errors += [{"field": f"files.{f['key']}", "messages": ["File is not committed."]} for f in files if f["status"] != "completed"]
        if len(files) > MAX_FILES or sum(f["size"] or 0 for f in files) > MAX_BYTES:
            errors.append({"field": "files", "messages": ["Too many files or too large."]})
        if errors:
            raise error(400, "A validation error occurred.", errors)
        rec["published"] = True
        rec["doi"] = f"{self.prefix}/zenodo.{rec['id']}"
        self.parent_dois.setdefault(rec["parent"], f"{self.prefix}/zenodo.{rec['parent']}")
        return self.view(rec)

    def files(self, rec: dict, method: str, rest: list[str], json_body: Any, body: bytes, content_type: str) -> tuple[int, Any]:
        files = rec["files"]
        if not rest:
            if method == "GET":
                return 200, {"enabled": True, "entries": [self.entry(rec, f) for f in files.values()]}
            if method == "POST":
                if not isinstance(json_body, list) or not all(isinstance(e, dict) and e.get("key") for e in json_body):
                    raise error(400, "A list of objects with a key is expected.")
                for e in json_body:
                    if e["key"] in files:
                        raise error(400, f"File with key {e['key']} already exists.")
                if len(files) + len(json_body) > MAX_FILES:
                    raise error(400, f"Too many files: at most {MAX_FILES} per record.")
                for e in json_body:
                    files[e["key"]] = {"key": e["key"], "status": "pending", "data": None, "size": None, "checksum": None}
                return 201, {"enabled": True, "entries": [self.entry(rec, files[e["key"]]) for e in json_body]}
        key = rest[0]
        f = files.get(key)
        if f is None:
            raise error(404, f"File with key {key} not found.")
        if rest == [key] and method == "DELETE":
            del files[key]
            return 204, None
        if rest == [key] and method == "GET":
            return 200, self.entry(rec, f)
        if rest == [key, "content"] and method == "PUT":
            if content_type != "application/octet-stream":
                raise error(415, f"file content must be application/octet-stream, not {content_type or 'nothing'}")
            if f["status"] == "completed":
                raise error(400, "File is already committed.")
            f["data"], f["size"] = body, len(body)
            self.uploads[(rec["id"], key)] += 1
            return 200, self.entry(rec, f)
        if rest == [key, "commit"] and method == "POST":
            if f["data"] is None:
                raise error(400, "No content was uploaded for this file.")
            f["status"], f["checksum"] = "completed", "md5:" + hashlib.md5(f["data"]).hexdigest()
            if self.on_commit is not None:
                self.on_commit(rec["id"], key, files)
            return 200, self.entry(rec, f)
        raise error(405, f"{method} is not allowed here")

    def search(self, query: dict[str, list[str]]) -> dict:
        terms = [t.split(":", 1) for t in (query.get("q") or [""])[0].split(" AND ") if ":" in t]
        allversions = (query.get("allversions") or ["false"])[0] == "true"
        hits = []
        for rec in sorted(self.records.values(), key=lambda r: int(r["id"]), reverse=True):
            view = self.view(rec)
            if not allversions and rec["published"] and self.parents[rec["parent"]][-1] != rec["id"]:
                continue
            if self.hide_drafts_from_search and not rec["published"]:
                continue
            if all(str(_dig(view, k)) == v.strip('"') for k, v in terms):
                hits.append(view)
        return {"hits": {"hits": hits[: int((query.get("size") or ["10"])[0])], "total": len(hits)}}

    def entry(self, rec: dict, f: dict) -> dict:
        base = f"{self.api}/records/{rec['id']}/draft/files/{f['key']}"
        out = {"key": f["key"], "status": f["status"], "links": {"self": base, "content": base + "/content", "commit": base + "/commit"}}
        if f["status"] == "completed":
            out.update(checksum=f["checksum"], size=f["size"], mimetype="application/octet-stream")
        return out

    def view(self, rec: dict) -> dict:
        family = self.parents[rec["parent"]]
        parent: dict[str, Any] = {"id": rec["parent"]}
        if rec["parent"] in self.parent_dois:
            parent["pids"] = {"doi": {"identifier": self.parent_dois[rec["parent"]], "provider": "datacite", "client": "datacite"}}
        where = "records" if rec["published"] else "uploads"
        api = f"{self.api}/records/{rec['id']}" + ("" if rec["published"] else "/draft")
        return {
            "id": rec["id"],
            "is_published": rec["published"],
            "is_draft": not rec["published"],
            "status": "published" if rec["published"] else "draft",
            "parent": parent,
            "pids": {"doi": {"identifier": rec["doi"], "provider": "datacite", "client": "datacite"}} if rec["doi"] else {},
            "metadata": rec["metadata"],
            "access": rec["access"],
            "files": {"enabled": True, "count": len(rec["files"])},
            "versions": {"index": family.index(rec["id"]) + 1, "is_latest": rec["published"] and family[-1] == rec["id"], "is_latest_draft": family[-1] == rec["id"]},
            "links": {"self": api, "self_html": f"{self.url}/{where}/{rec['id']}", "files": api + "/files", "versions": f"{self.api}/records/{rec['id']}/versions"},
        }


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    if isinstance(doc, bool):
        return str(doc).lower()
    return doc


class ZenodoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _serve(self, method: str) -> None:
        owner: FakeZenodo = self.server.owner
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, headers = 500, None, {}
        with owner.lock:
            owner.times.append((method, url.path, time.monotonic()))
            failure = next((f for f in owner.failures if f.matches(method, url.path)), None)
            if failure is not None:
                failure.times -= 1
            try:
                auth = self.headers.get("Authorization")
                if not auth:
                    raise error(401, "The server could not verify that you are authorized to access the URL requested.")
                if auth != f"Bearer {owner.token}":
                    raise error(403, "Permission denied.")
                if failure is not None and not failure.after:
                    raise Reply(failure.status, failure.body or {"status": failure.status, "message": "failure on demand"}, failure.headers)
                status, payload = owner.handle(method, url.path, parse_qs(url.query), body, self.headers.get("Content-Type", ""))
                if failure is not None:
                    raise Reply(failure.status, failure.body or {"status": failure.status, "message": "answer lost on demand"}, failure.headers)
            except Reply as reply:
                status, payload, headers = reply.status, reply.body, reply.headers
            owner.calls.append((method, url.path, status))
            if owner.quota is not None:
                headers = {"X-RateLimit-Limit": "133", "X-RateLimit-Remaining": str(owner.quota[0]), "X-RateLimit-Reset": str(int(owner.quota[1])), **headers}
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


def wait_until(predicate: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
