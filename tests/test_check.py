"""`exporter check`: one line per check of a deployment's settings, non-zero exit when any is wrong."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .conftest import free_port
from .test_cli_unmigrated import run


class OpenFlower(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"flower")

    def log_message(self, *args):
        pass


def lines(result) -> dict[str, str]:
    return {line[5:].split(":", 1)[0]: line for line in result.stdout.splitlines()}


def test_embedded_defaults_pass_once_migrated(tmp_path):
    before = run(tmp_path, "check")
    assert before.returncode == 1
    assert lines(before)["migrations"].startswith("FAIL") and "exporter db upgrade" in lines(before)["migrations"]
    assert run(tmp_path, "db", "upgrade").returncode == 0
    after = run(tmp_path, "check", EXPORTER_FLOWER_URL=f"http://127.0.0.1:{free_port()}")
    assert after.returncode == 0, after.stdout
    assert set(lines(after)) == {"secret key", "public URL", "database", "migrations", "broker", "storage", "flower"}
    assert all(line.startswith("ok") for line in after.stdout.splitlines())


def test_production_settings_are_told_what_is_wrong_one_line_each(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenFlower)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "a-file").write_text("not a folder")
    try:
        assert run(tmp_path, "db", "upgrade").returncode == 0
        result = run(
            tmp_path, "check",
            EXPORTER_ENV="production",
            EXPORTER_SECRET_KEY="only-twenty-chars-xx",
            EXPORTER_BROKER_URL="redis://127.0.0.1:1/0",
            EXPORTER_STORAGE_URL=f"file://{tmp_path / 'a-file' / 'storage'}",
            EXPORTER_FLOWER_URL=f"http://127.0.0.1:{server.server_port}",
            EXPORTER_FLOWER_BASIC_AUTH="operator:long-enough-password",
        )
    finally:
        server.shutdown()
    assert result.returncode == 1
    found = lines(result)
    assert found["secret key"].startswith("FAIL") and "at least 32" in found["secret key"]
    assert found["public URL"].startswith("FAIL") and "EXPORTER_PUBLIC_URL is not set" in found["public URL"]
    assert found["broker"].startswith("FAIL")
    assert found["storage"].startswith("FAIL")
    assert found["flower"].startswith("FAIL") and "answers 200 without credentials" in found["flower"]
    assert found["database"].startswith("ok") and found["migrations"].startswith("ok")


def test_production_flower_needs_its_own_credentials(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    result = run(tmp_path, "check", EXPORTER_ENV="production", EXPORTER_SECRET_KEY="x" * 40, EXPORTER_PUBLIC_URL="https://exporter.example.org")
    assert result.returncode == 1
    found = lines(result)
    assert found["flower"].startswith("FAIL") and "EXPORTER_FLOWER_BASIC_AUTH is not set" in found["flower"]
    assert found["secret key"].startswith("ok") and found["public URL"].startswith("ok")


def test_every_setting_that_cannot_be_used_is_a_line_of_its_own(tmp_path):
    result = run(
        tmp_path, "check",
        EXPORTER_ENV="production",
        EXPORTER_SECRET_KEY="short",
        EXPORTER_PUBLIC_URL="not-a-url",
        EXPORTER_FLOWER_BASIC_AUTH="operator",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL settings: ")]
    named = ("EXPORTER_SECRET_KEY", "EXPORTER_PUBLIC_URL", "EXPORTER_FLOWER_BASIC_AUTH")
    assert len(failed) == len(named), result.stdout
    assert all(any(name in line for line in failed) for name in named), result.stdout
    # Any other command still stops at the first, in one line.
    listed = run(tmp_path, "jobs", "list", EXPORTER_PUBLIC_URL="not-a-url")
    assert listed.returncode == 1 and listed.stderr.strip().splitlines() == ["Error: configuration error: EXPORTER_PUBLIC_URL must be an http(s) URL, got 'not-a-url'"]
