"""Migrations and models agree on both backends; migrations run up and down."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from exporter import migrate
from exporter.db import Base
from exporter.discovery.models import MIGRATION_ONLY
from exporter.schema import load_models


def _modelled(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out what a migration creates on one backend only (the search index's tsvector/GIN or FTS5 table)."""
    if type_ == "column":
        name = f"{obj.table.name}.{name}"
    return (type_, name) not in MIGRATION_ONLY


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrated_schema_matches_the_models(request, backend):
    url = request.getfixturevalue("sqlite_database_url" if backend == "sqlite" else "pg_database_url")
    load_models()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _modelled})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ on {backend}: {diff}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_search_index_objects_left_out_of_the_comparison_exist(request, backend):
    url = request.getfixturevalue("sqlite_database_url" if backend == "sqlite" else "pg_database_url")
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        if backend == "postgresql":
            assert "tsv" in {c["name"] for c in insp.get_columns("raid_search")}
            assert "ix_raid_search_tsv" in {i["name"] for i in insp.get_indexes("raid_search")}
        else:
            assert "raid_search_fts" in insp.get_table_names()
    finally:
        engine.dispose()


def test_upgrade_and_downgrade_on_a_fresh_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    engine = create_engine(url)
    assert {"jobs", "artifacts", "task_status"} <= set(inspect(engine).get_table_names())
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
