"""Alembic migrations, run without an alembic.ini: `exporter db upgrade`.

Each area (engine, raids, archiver, api) owns one branch of revisions starting at the
engine's 0001, so areas evolve independently; `upgrade` applies every head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            return ", ".join(sorted(heads)) or "(empty)"
    finally:
        engine.dispose()


def missing_heads(url: str) -> set[str]:
    """Heads of the migration scripts the database has not reached (all of them on an empty database)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    script = ScriptDirectory.from_config(alembic_config(url))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    reached: set[str] = set()
    for rev in current:
        if script.get_revision(rev) is None:
            continue
        reached.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return set(script.get_heads()) - reached
