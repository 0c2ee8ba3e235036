"""Shared fixtures: real databases (SQLite and PostgreSQL), local and S3 storage (moto server)."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from exporter import migrate
from exporter.config import load_settings
from exporter.context import Context, set_context
from exporter.db import Base
from exporter.schema import load_models

PG_ADMIN_URL = os.environ.get("EXPORTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EXPORTER_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_service(name: str, host: str, port: int) -> None:
    """Fail loudly (never skip) when a service the test needs is not running."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"{name} is not reachable on {host}:{port} ({exc}); start it (see .ci/run)", pytrace=False)


@pytest.fixture(scope="session")
def pg_database_url():
    """A fresh PostgreSQL database for this test session, migrated to head."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"exporter_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'exporter.db'}"
    migrate.upgrade(url)
    return url


def _truncate(url: str) -> None:
    load_models()
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def make_settings(tmp_path):
    """Settings for a test: VAR_DIR and local storage under tmp_path, plus overrides."""

    def make(**overrides):
        env = {
            "EXPORTER_VAR_DIR": str(tmp_path / "var"),
            "EXPORTER_SECRET_KEY": "test-secret-key-0123456789",
            "EXPORTER_BROKER_URL": "memory://",
        }
        env.update({f"EXPORTER_{k.upper()}": str(v) for k, v in overrides.items()})
        return load_settings(env)

    return make


def _ctx(make_settings, url):
    _truncate(url)
    ctx = Context(make_settings(database_url=url))
    sent: list[tuple[str, str, str]] = []
    ctx.enqueue = lambda task, job_id, queue: sent.append((task, job_id, queue))
    ctx.sent = sent
    set_context(ctx)
    yield ctx
    set_context(None)
    ctx.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request, make_settings):
    """A context on each database backend in turn; enqueued tasks are collected in ctx.sent."""
    url = request.getfixturevalue(f"{request.param}_database_url" if request.param == "sqlite" else "pg_database_url")
    yield from _ctx(make_settings, url)


@pytest.fixture
def pg_ctx(make_settings, pg_database_url):
    """A context on PostgreSQL only, for tests where the backend does not matter."""
    yield from _ctx(make_settings, pg_database_url)


@pytest.fixture(scope="session")
def moto_server():
    """moto's standalone S3 server over real HTTP on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(make_settings, moto_server):
    """Settings pointing at a fresh bucket on the moto server."""
    import boto3

    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return make_settings(storage_url=f"s3://{bucket}/exports", s3_endpoint_url=moto_server)


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
