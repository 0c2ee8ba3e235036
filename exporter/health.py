"""Checks that the database, the broker and the storage answer; each says what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection
from sqlalchemy import inspect, text

from .context import Context


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_database(ctx: Context) -> Check:
    try:
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            migrated = inspect(conn).has_table("alembic_version")
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() if migrated else []
    except Exception as exc:
        return Check("database", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if not version:
        return Check("database", False, "schema not migrated: run `exporter db upgrade`")
    return Check("database", True, f"{ctx.db.backend}, schema {', '.join(sorted(version))}")


def check_broker(ctx: Context) -> Check:
    settings = ctx.settings
    if settings.is_embedded_broker:
        folder = settings.broker_folder / "queue"
        if folder.is_dir():
            return Check("broker", True, f"filesystem queue at {folder}")
        return Check("broker", False, f"filesystem queue folder {folder} is missing")
    try:
        with Connection(settings.broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            return Check("broker", True, conn.as_uri())
    except Exception as exc:
        return Check("broker", False, f"{type(exc).__name__}: {exc}")


def check_storage(ctx: Context) -> Check:
    try:
        ctx.storage.check()
    except Exception as exc:
        return Check("storage", False, f"{type(exc).__name__}: {exc}")
    return Check("storage", True, ctx.settings.storage_url)


def check_all(ctx: Context) -> list[Check]:
    return [check_database(ctx), check_broker(ctx), check_storage(ctx)]
