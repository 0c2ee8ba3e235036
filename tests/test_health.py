"""/healthz checks database, broker and storage, and says which one is down."""

from __future__ import annotations

from exporter.context import Context
from web import create_app

from .conftest import free_port


def client_for(settings):
    ctx = Context(settings)
    ctx.enqueue = lambda *a: None
    return create_app(ctx).test_client()


def test_all_up(ctx):
    ctx.settings = ctx.settings.replace(broker_url="redis://127.0.0.1:6379/13")
    r = create_app(ctx).test_client().get("/healthz")
    assert r.status_code == 200 and r.json["status"] == "ok"
    assert set(r.json["checks"]) == {"database", "broker", "storage"}


def test_broker_down_is_named(make_settings, sqlite_database_url):
    r = client_for(make_settings(database_url=sqlite_database_url, broker_url=f"redis://127.0.0.1:{free_port()}/0")).get("/healthz")
    assert r.status_code == 503 and r.json["down"] == ["broker"]


def test_unmigrated_database_is_named(make_settings, tmp_path):
    r = client_for(make_settings(database_url=f"sqlite:///{tmp_path}/empty.db")).get("/healthz")
    assert r.status_code == 503 and r.json["down"] == ["database"]
    assert "exporter db upgrade" in r.json["checks"]["database"]["detail"]


def test_storage_down_is_named(make_settings, sqlite_database_url, moto_server):
    settings = make_settings(database_url=sqlite_database_url, storage_url="s3://no-such-bucket", s3_endpoint_url=moto_server)
    r = client_for(settings).get("/healthz")
    assert r.status_code == 503 and r.json["down"] == ["storage"]
