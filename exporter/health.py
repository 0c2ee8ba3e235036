"""Checks that the database, the broker and the storage answer; each says what is wrong."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from kombu import Connection
from sqlalchemy import inspect, text

from . import migrate
from .config import PREFIX, Settings, is_production
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


MIN_SECRET_LENGTH = 32


def check_secret(env: Mapping[str, str]) -> Check:
    raw = env.get(PREFIX + "SECRET_KEY", "")
    if not raw:
        if is_production(env):
            return Check("secret key", False, f"{PREFIX}SECRET_KEY is not set (production settings need one)")
        return Check("secret key", True, "generated and kept in VAR_DIR/secret_key (embedded mode)")
    if len(raw) < MIN_SECRET_LENGTH:
        return Check("secret key", False, f"{PREFIX}SECRET_KEY has {len(raw)} characters; use at least {MIN_SECRET_LENGTH} random ones")
    return Check("secret key", True, f"{len(raw)} characters")


def check_public_url(settings: Settings, env: Mapping[str, str]) -> Check:
    if is_production(env) and not env.get(PREFIX + "PUBLIC_URL"):
        return Check("public URL", False, f"{PREFIX}PUBLIC_URL is not set: download links would point at {settings.public_url}")
    return Check("public URL", True, settings.public_url)


def check_migrations(settings: Settings) -> Check:
    try:
        missing = migrate.missing_heads(settings.database_url)
    except Exception as exc:
        return Check("migrations", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if missing:
        return Check("migrations", False, f"missing {', '.join(sorted(missing))}: run `exporter db upgrade`")
    return Check("migrations", True, "at every head")


def check_flower(settings: Settings, env: Mapping[str, str]) -> Check:
    if is_production(env) and not settings.flower_basic_auth:
        return Check("flower", False, f"{PREFIX}FLOWER_BASIC_AUTH is not set: Flower in production needs its own `user:password`")
    try:
        answer = requests.get(settings.flower_url.rstrip("/") + "/", timeout=3, allow_redirects=False)
    except requests.RequestException:
        return Check("flower", True, f"protected by basic auth when started; not answering at {settings.flower_url}")
    if answer.status_code == 401:
        return Check("flower", True, f"{settings.flower_url} asks for credentials")
    return Check("flower", False, f"{settings.flower_url} answers {answer.status_code} without credentials: start it with --basic-auth (`exporter flower`)")


def check_broker_for_deployment(ctx: Context) -> Check:
    """The broker answers; an embedded queue not created yet is fine if VAR_DIR can hold it."""
    settings = ctx.settings
    folder = settings.broker_folder / "queue"
    if settings.is_embedded_broker and not folder.is_dir():
        parent = next((p for p in (settings.broker_folder, *settings.broker_folder.parents) if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK):
            return Check("broker", True, f"filesystem queue at {folder} (made when the first process starts)")
        return Check("broker", False, f"filesystem queue folder {folder} cannot be created")
    return check_broker(ctx)


def check_deployment(ctx: Context, env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check of a deployment's settings, each saying what is wrong."""
    env = os.environ if env is None else env
    settings = ctx.settings
    return [
        check_secret(env),
        check_public_url(settings, env),
        check_database(ctx),
        check_migrations(settings),
        check_broker_for_deployment(ctx),
        check_storage(ctx),
        check_flower(settings, env),
    ]
