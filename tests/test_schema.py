"""Migrations and models agree on both backends; migrations run up and down."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from exporter import migrate
from exporter.db import Base
from exporter.schema import load_models


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrated_schema_matches_the_models(request, backend):
    url = request.getfixturevalue("sqlite_database_url" if backend == "sqlite" else "pg_database_url")
    load_models()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ on {backend}: {diff}"


def test_upgrade_and_downgrade_on_a_fresh_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    engine = create_engine(url)
    assert {"jobs", "artifacts", "task_status"} <= set(inspect(engine).get_table_names())
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
