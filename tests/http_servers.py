"""Real local HTTP servers for the archiver's tests and benchmark.

- `Nginx`: Debian's nginx as an unprivileged foreground process on 127.0.0.1 with its own
  prefix, config, pid and logs in a temp folder; real ETag/Last-Modified/304 behaviour.
- `ScenarioServer`: a threaded http.server for status codes, redirects, lying Content-Length,
  slow bodies, timeouts and Retry-After; it records every request it gets.
- `FakeCKAN`: a portal speaking the CKAN Action API envelope with package_search paging
  and resource_patch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

NGINX_BINARIES = ("/usr/sbin/nginx", "nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def nginx_binary() -> str:
    for candidate in NGINX_BINARIES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("nginx is not installed (Debian package: nginx); the archiver tests need it")


NGINX_CONF = """
{user}
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log combined;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{
        text/csv csv;
        application/json json;
        text/html html;
        text/plain txt;
        application/zip zip;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /cached/ {{ expires 1h; }}
    }}
}}
"""


class Nginx:
    """nginx serving `root` on 127.0.0.1:<free port>, as the current user, in the foreground."""

    def __init__(self, root: Path, prefix: Path, workers: int = 1):
        self.root = Path(root)
        self.prefix = Path(prefix)
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        # Started as root, nginx would hand its workers to `nobody`, who cannot read pytest's
        # 0700 temp folders: keep them as the current user.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, prefix=self.prefix, root=self.root, port=self.port, workers=self.workers))
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port)
        except RuntimeError:
            self.stop()
            log = (self.prefix / "error.log").read_text() if (self.prefix / "error.log").exists() else ""
            raise RuntimeError(f"nginx did not start: {log}") from None
        return self

    def access_log(self) -> list[str]:
        path = self.prefix / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients (the archiver) hang up early on purpose: too big, too slow


class _Base:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.port = free_port()
        self.httpd = _Server(("127.0.0.1", self.port), handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ScenarioHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _raw(self, status: int, headers: list[tuple[str, str]], body: bytes = b"", reason: str | None = None) -> None:
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - one branch per scenario
        owner: ScenarioServer = self.server.owner
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        with owner.lock:
            owner.requests.append((path, dict(self.headers.items())))
            owner.counts[path] += 1
            owner.full_counts[self.path] += 1
            count = owner.full_counts[self.path]  # per full URL: scenarios keyed by their query
        if path == "/ckan" or path.startswith("/ckan/"):  # ckanext-archiver's mock_remote_server, by the same query flags
            self._ckan_mock(parse_qs(parts.query, keep_blank_values=True))
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            body = b"status"
            self._raw(code, [("Content-Length", str(len(body))), ("Content-Type", "text/plain")], body)
        elif path == "/data.csv":
            body = q.get("body", "a,b\n1,2\n").encode()
            self._raw(200, [("Content-Length", str(len(body))), ("Content-Type", "text/csv")], body)
        elif path == "/redirect":
            n = int(q.get("n", "1"))
            target = q.get("to", "/data.csv")
            loc = f"/redirect?n={n - 1}&to={target}" if n > 1 else target
            cookie = [("Set-Cookie", f"{q['cookie']}; Path=/")] if "cookie" in q else []  # ?cookie=name=value: set on the way
            self._raw(int(q.get("code", "302")), [("Location", loc), ("Content-Length", "0"), *cookie])
        elif path == "/html":
            body = b"<html><body>a landing page</body></html>"
            self._raw(200, [("Content-Length", str(len(body))), ("Content-Type", "text/html; charset=utf-8")], body)
        elif path == "/disposition":
            body = b"x,y\n"
            self._raw(200, [("Content-Length", "4"), ("Content-Type", "text/csv"), ("Content-Disposition", q.get("cd", 'attachment; filename="../../etc/My Report 2024.csv"'))], body)
        elif path == "/chunked":
            size = int(q.get("size", "1000"))
            self._raw(200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")])
            sent = 0
            try:
                while sent < size:
                    n = min(65536, size - sent)
                    self.wfile.write(f"{n:x}\r\n".encode() + b"x" * n + b"\r\n")
                    sent += n
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif path == "/lie":
            declared, actual = q.get("declared", "10"), int(q.get("actual", "100"))
            headers = [("Content-Type", "application/octet-stream")]
            for value in declared.split("|"):
                headers.append(("Content-Length", value))
            headers.append(("Connection", "close"))
            try:
                self._raw(200, headers, b"y" * actual)
            except OSError:
                pass
            self.close_connection = True
        elif path == "/slow":
            size, delay = int(q.get("size", "10")), float(q.get("delay", "0.2"))
            with owner.lock:
                owner.inflight += 1
                owner.max_inflight = max(owner.max_inflight, owner.inflight)
            try:
                self._raw(200, [("Content-Length", str(size)), ("Content-Type", "application/octet-stream")])
                for _ in range(size):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(delay)
            except OSError:
                pass
            finally:
                with owner.lock:
                    owner.inflight -= 1
        elif path == "/hang":
            time.sleep(float(q.get("delay", "1")))
            try:
                self._raw(200, [("Content-Length", "2"), ("Content-Type", "text/plain")], b"ok")
            except OSError:
                pass
        elif path == "/held":  # answers once the test sets `release` (or after ?timeout= seconds); `held` says one arrived
            owner.held.set()
            owner.release.wait(float(q.get("timeout", "60")))
            body = b"held,1\n"
            try:
                self._raw(200, [("Content-Length", str(len(body))), ("Content-Type", "text/csv")], body)
            except OSError:
                pass
        elif path == "/flaky":
            fails, code = int(q.get("fails", "2")), int(q.get("code", "503"))
            if count <= fails:
                headers = [("Content-Length", "4"), ("Content-Type", "text/plain")]
                if "retry_after" in q:
                    headers.append(("Retry-After", q["retry_after"]))
                self._raw(code, headers, b"fail")
            else:
                body = f"ok after {count}\n".encode()
                self._raw(200, [("Content-Length", str(len(body))), ("Content-Type", "text/csv")], body)
        elif path == "/cache":
            body = b"fresh,data\n"
            headers = [("Content-Length", str(len(body))), ("Content-Type", "text/csv")]
            if "max_age" in q:
                headers.append(("Cache-Control", f"max-age={q['max_age']}"))
            if "expires" in q:
                headers.append(("Expires", q["expires"]))
            self._raw(200, headers, body)
        elif path == "/versioned":  # ETag when asked for (?etag=1), If-None-Match honoured
            body = owner.versioned_body
            tag = '"' + hashlib.sha1(body).hexdigest()[:12] + '"'
            headers = [("Content-Type", "text/csv")] + ([("ETag", tag)] if "etag" in q else [])
            if "etag" in q and self.headers.get("If-None-Match") == tag:
                self._raw(304, headers)
            else:
                self._raw(200, headers + [("Content-Length", str(len(body)))], body)
        else:
            self._raw(404, [("Content-Length", "9"), ("Content-Type", "text/plain")], b"not found")


    def _ckan_mock(self, flags: dict[str, list[str]]) -> None:
        """?status=&content=&content-type=&length=&repeat-length&no-content-length&content_long=N&location=&method="""
        q = {k: v[-1] for k, v in flags.items()}
        if q.get("method") == "get" and self.command != "GET":
            self._raw(405, [("Content-Length", "0")])
            return
        body = (b"x" * int(q["content_long"])) if "content_long" in q else q.get("content", "").encode()
        headers = [(name, q[key]) for key, name in (("content-type", "Content-Type"), ("location", "Location")) if key in q]
        if "no-content-length" in q:
            headers.append(("Connection", "close"))
            self.close_connection = True
        else:
            length = q.get("length", str(len(body)))
            headers += [("Content-Length", length)] * (2 if "repeat-length" in q else 1)
        try:
            self._raw(int(q.get("status", "200")), headers, body)
        except OSError:
            pass
        if q.get("length") not in (None, str(len(body))):
            self.close_connection = True  # a lying length: the connection cannot be reused

    def do_POST(self) -> None:
        owner: ScenarioServer = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            owner.posts.append((urlsplit(self.path).path, dict(self.headers.items()), body))
        self.do_GET()


class ScenarioServer(_Base):
    """See ScenarioHandler.do_GET for the scenarios; `requests` and `counts` record what arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.posts: list[tuple[str, dict[str, str], bytes]] = []  # POSTs also appear in `requests`
        self.counts: dict[str, int] = defaultdict(int)  # per path
        self.full_counts: dict[str, int] = defaultdict(int)  # per path and query
        self.versioned_body = b"v1\n"
        self.inflight = 0
        self.max_inflight = 0
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__(ScenarioHandler)


class RedirectingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: RedirectingServer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner.seen.append((self.command, self.path, dict(self.headers.items()), body))
        self.send_response(owner.code)
        self.send_header("Location", owner.target)
        self.send_header("Set-Cookie", "sid=redirecting-session; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_GET


class RedirectingServer(_Base):
    """Answers every request with `code` to `target` (setting a cookie on the way); `seen` holds
    (method, path, headers, body) of each request."""

    def __init__(self, target: str, code: int = 302):
        self.target, self.code = target, code
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        super().__init__(RedirectingHandler)


class _Trickling(BaseHTTPRequestHandler):
    """Answers a byte or a header line every 0.3 s (at most 60 of them, then the full answer):
    each read is quick, the whole exchange is not."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner
        try:
            if owner.part == "headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(60):
                    self.wfile.write(f"X-Slow-{i}: x\r\n".encode())
                    self.wfile.flush()
                    time.sleep(0.3)
                self.wfile.write(b"Content-Length: 0\r\n\r\n")
            else:
                self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 60\r\n\r\n")
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
        except OSError:
            owner.cut = True  # the client hung up

    do_POST = do_GET


class TricklingServer(_Base):
    def __init__(self, part: str):
        self.part, self.cut = part, False
        super().__init__(_Trickling)


class CKANHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        owner: FakeCKAN = self.server.owner
        return bool(owner.token) and self.headers.get("Authorization") == owner.token

    def do_GET(self) -> None:
        owner: FakeCKAN = self.server.owner
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        owner.calls.append((parts.path, q))
        if parts.path == "/api/3/action/status_show":
            self._json(200, {"success": True, "result": {"ckan_version": "2.10.4", "site_title": "Fake"}})
            return
        if parts.path == "/api/3/action/organization_list_for_user":  # the token's user's organizations (none for anonymous)
            orgs = [o for o in sorted(owner.organizations) if owner.readable_orgs is None or o in owner.readable_orgs] if self._authorized() else []
            self._json(200, {"success": True, "result": [{"name": o, "id": f"org-{o}"} for o in orgs]})
            return
        if parts.path != "/api/3/action/package_search":
            self._json(404, {"success": False, "error": {"__type": "Not Found Error", "message": "Not found"}})
            return
        rows, start = int(q.get("rows", "10")), int(q.get("start", "0"))
        if rows > owner.max_rows:
            rows = owner.max_rows  # as CKAN's ckan.search.rows_max
        private = q.get("include_private", "false").lower() == "true" and self._authorized()
        visible = [p for p in owner.packages if not p.get("private") or (private and owner.reads(p))]
        key = (q.get("sort") or "").split()[0] if q.get("sort") else "name"
        visible.sort(key=lambda p: (p.get(key) or "", p["id"]))
        fq = q.get("fq", "") + owner.plugin_fq  # as a search plugin's before_dataset_search appends to fq
        after = _id_range_start(fq)
        if after is not None:  # Solr's exclusive range id:{"x" TO *], as CKAN passes fq through
            visible = [p for p in visible if p["id"] > after]
        page = visible[start : start + rows]
        self._json(200, {"success": True, "result": {"count": max(0, len(visible) + owner.count_bonus), "results": page, "sort": q.get("sort"), "facets": {}, "search_facets": {}}})

    def do_POST(self) -> None:
        owner: FakeCKAN = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        if parts.path != "/api/3/action/resource_patch":
            self._json(404, {"success": False, "error": {"message": "Not found"}})
            return
        if not self._authorized():
            self._json(403, {"success": False, "error": {"__type": "Authorization Error", "message": "Access denied"}})
            return
        owner.patches.append(data)
        for p in owner.packages:
            for r in p["resources"]:
                if r["id"] == data.get("id"):
                    r.update(data)
                    self._json(200, {"success": True, "result": r})
                    return
        self._json(404, {"success": False, "error": {"__type": "Not Found Error", "message": "Resource was not found."}})


def _id_range_start(fq: str) -> str | None:
    """x from `id:{"x" TO *]` (the only filter the fake portal understands, with an optional
    " +dataset_type:dataset" after it), else None. As Lucene with the default operator OR (CKAN
    before 2.9, or a portal's own Solr settings): a clause without "+" next to a required one is
    optional, so it filters nothing."""
    m = re.fullmatch(r'(\+?)id:\{"((?:[^"\\]|\\.)*)" TO \*\]( \+dataset_type:dataset)?', fq.strip())
    if not m or (m.group(3) and not m.group(1)):
        return None
    return re.sub(r"\\(.)", r"\1", m.group(2))


class FakeCKAN(_Base):
    """`packages` is a list of CKAN package dicts (with `resources`); tests edit it between sweeps."""

    def __init__(self, packages: list[dict] | None = None, token: str | None = None, max_rows: int = 1000):
        self.packages = packages or []
        self.token = token
        self.max_rows = max_rows
        self.count_bonus = 0  # > 0: announce more datasets than it lists (a short listing); < 0: fewer (a short count)
        self.plugin_fq = ""  # " +dataset_type:dataset": appended to every fq, as search plugins do
        self.readable_orgs: set[str] | None = None  # organizations whose private datasets the token reads (None: all)
        self.organizations = {(p.get("organization") or {}).get("name") for p in self.packages} - {None}  # they outlive their datasets
        self.calls: list[tuple[str, dict]] = []
        self.patches: list[dict] = []
        super().__init__(CKANHandler)

    def reads(self, package: dict) -> bool:
        return self.readable_orgs is None or (package.get("organization") or {}).get("name") in self.readable_orgs


def ckan_package(name: str, org: str, resources: list[tuple[str, str]], private: bool = False) -> dict:
    """A CKAN package dict with resources given as (resource id, url)."""
    return {
        "id": f"pkg-{name}",
        "name": name,
        "title": name.title(),
        "private": private,
        "metadata_modified": "2026-01-01T00:00:00",
        "organization": {"id": f"org-{org}", "name": org, "title": org.title()},
        "resources": [
            {"id": rid, "url": url, "name": f"{name} {i}", "format": url.rsplit(".", 1)[-1].upper() if "." in url.rsplit("/", 1)[-1] else "", "package_id": f"pkg-{name}"}
            for i, (rid, url) in enumerate(resources)
        ],
    }
