"""Alembic migrations, run without an alembic.ini: `exporter db upgrade`.

Each area (engine, raids, archiver, api) owns one branch of revisions starting at the
engine's 0001, so areas evolve independently; `upgrade` applies every head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from exporter.errors import ExporterError

HERE = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class MigrationError(ExporterError):
    """Alembic cannot go where asked: a revision no script names, in the database or on the command line."""


def known_heads(url: str, script: ScriptDirectory) -> set[str]:
    """The database's recorded revisions, after refusing any that no script here names."""
    recorded = recorded_heads(url)
    strangers = sorted(rev for rev in recorded if rev not in {s.revision for s in script.walk_revisions()})
    if strangers:
        raise MigrationError(f"the database is at revision {', '.join(strangers)}, which this version of exporter does not know (was it migrated by a newer version?)")
    return recorded


def upgrade(url: str, revision: str = "heads") -> None:
    cfg = alembic_config(url)
    known_heads(url, ScriptDirectory.from_config(cfg))
    try:
        command.upgrade(cfg, revision)
    except CommandError as exc:
        raise MigrationError(str(exc).splitlines()[0]) from None


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def recorded_heads(url: str) -> set[str]:
    """The revisions the database says it is at (none on an empty database)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def current(url: str) -> str:
    return ", ".join(sorted(recorded_heads(url))) or "(empty)"


def missing_heads(url: str) -> set[str]:
    """Heads of the migration scripts the database has not reached (all of them on an empty database)."""
    script = ScriptDirectory.from_config(alembic_config(url))
    reached: set[str] = set()
    for rev in known_heads(url, script):
        reached.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return set(script.get_heads()) - reached
