"""A real local server for /public/dumps, publication runs and mirror readers for tests/test_dumps*.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import make_server

from exporter import jobs, runner
from web import create_app

from .raids_helpers import exported, run_export

AGENCY_ID = "038sjwq14"


class Served:
    """The web app on a werkzeug server thread; records each request path, and can hold back some."""

    def __init__(self, ctx):
        self.requests: list[tuple[str, int]] = []  # (path, status) once answered
        self.arrived: list[str] = []  # paths as they arrive, before any delay
        self.delay: dict[str, float] = {}  # path substring -> seconds to wait before answering
        app = create_app(ctx)
        inner = app.wsgi_app

        def counting(environ, start_response):
            path = environ["PATH_INFO"]
            self.arrived.append(path)
            for needle, seconds in self.delay.items():
                if needle in path:
                    time.sleep(seconds)

            def start(status, headers, exc_info=None):
                self.requests.append((path, int(status.split()[0])))
                return start_response(status, headers, exc_info)

            return inner(environ, start)

        app.wsgi_app = counting
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def dump_url(self, agency: str = AGENCY_ID) -> str:
        return f"{self.url}/public/dumps/{agency}"


@contextmanager
def served(ctx) -> Iterator[Served]:
    s = Served(ctx)
    s.thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()


def publish(ctx, agency: str = AGENCY_ID) -> dict:
    job = jobs.submit(ctx, "publish_dump", {"agency": agency}, enqueue=False)
    status = runner.run_job(ctx, job.id)
    done = jobs.get(ctx, job.id)
    assert status == "succeeded", (status, done.error)
    return done.result


def public_view(ctx, agency: str = AGENCY_ID) -> dict[str, dict]:
    """The database's public view of the agency, as a full public export publishes it."""
    return exported(ctx, run_export(ctx, "export_public", {"agency": agency, "sitemaps": False}))


def mirror(dest: Path, ext: str = "json") -> dict[str, dict]:
    """The mirror's raid files, by handle; checks each sits where its handle says."""
    from exporter.dumps.layout import relative_path

    out = {}
    for path in sorted(dest.glob(f"*/*.{ext}")):
        if path.parent.name.startswith("."):
            continue
        record = json.loads(path.read_text())
        handle = record["identifier"]["id"]
        assert f"{path.parent.name}/{path.name}" == relative_path(handle, ext)
        out[handle] = record
    return out


def tree(dest: Path) -> dict[str, bytes]:
    """Every file under dest but the client's work folder, with its bytes (to show a folder untouched)."""
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file() and ".exporter-sync/" not in str(p.relative_to(dest)) + "/"}
