"""Fixtures shared by the archiver tests: nginx, the scenario server, archiver settings."""

from __future__ import annotations

import hashlib
import ipaddress
import uuid

import pytest

from exporter.archiver.archive import archive_resource
from exporter.archiver.resources import upsert_url
from tests.http_servers import Nginx, ScenarioServer

LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)

# Small waits so retries and timeouts cost little; the allowlist opens 127.0.0.1 only.
ARCHIVER_TEST_SETTINGS = dict(
    archiver_allow_networks=LOCAL,
    archiver_retry_backoff_ms=5,
    archiver_retry_after_max=0.2,
    archiver_host_delay_ms=0,
    archiver_connect_timeout=1.0,
    archiver_read_timeout=1.0,
    archiver_max_bytes=100_000,
    archiver_gone_after_sweeps=1,  # tests/test_archiver_safety.py covers the real thresholds
    archiver_gone_grace_days=0,
)


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "cached").mkdir()
    (root / "cached" / "fresh.csv").write_bytes(b"fresh,1\n")
    (root / "page.html").write_bytes(b"<html><body>landing page</body></html>")
    (root / "big.bin").write_bytes(b"b" * 200_000)
    server = Nginx(root, tmp_path_factory.mktemp("nginx")).start()
    server.root = root
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server():
    srv = ScenarioServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def actx(ctx):
    """`ctx` (SQLite and PostgreSQL) with the archiver's test settings."""
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS)
    return ctx


def unique(name: str) -> str:
    stem, _, ext = name.rpartition(".")
    return f"{stem}-{uuid.uuid4().hex[:8]}.{ext}"


def archive_url(ctx, url: str, **kwargs) -> dict:
    return archive_resource(ctx, upsert_url(ctx, url, link_check_only=kwargs.pop("link_check_only", False)), **kwargs)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
