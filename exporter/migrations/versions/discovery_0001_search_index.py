"""discovery: raid_search (the public search index), search_state; tsvector/GIN or FTS5; withdrawal trigger

Revision ID: discovery_0001
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "discovery_0001"
down_revision = "0002"
branch_labels = ("discovery",)
depends_on = None

# A write that makes a raid not public in full (or deletes it) hides its index row at once,
# in the same transaction, and moves the row's source_updated_at so that a refresh which
# read the raid before this write cannot put the old public view back. The refresh then
# re-indexes the raid (its updated_at moved) and shows it again with what is public now.
PG_WITHDRAW = """
CREATE OR REPLACE FUNCTION raid_search_withdraw() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    UPDATE raid_search SET withdrawn = true WHERE raid_id = OLD.id;
    RETURN OLD;
  END IF;
  IF NEW.deleted_at IS NOT NULL OR NOT (NEW.access_type = 'open' OR (NEW.access_type = 'embargoed'
     AND NEW.embargo_expiry IS NOT NULL AND NEW.embargo_expiry < (now() AT TIME ZONE 'UTC')::date)) THEN
    INSERT INTO raid_search (raid_id, in_full, deleted, withdrawn, source_updated_at)
    VALUES (NEW.id, false, false, true, NEW.updated_at)
    ON CONFLICT (raid_id) DO UPDATE SET
      withdrawn = raid_search.withdrawn OR raid_search.in_full OR NEW.deleted_at IS NOT NULL,
      source_updated_at = GREATEST(raid_search.source_updated_at, NEW.updated_at);
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER raid_search_withdraw AFTER UPDATE OR DELETE ON raids FOR EACH ROW EXECUTE FUNCTION raid_search_withdraw();
"""

SQLITE_WITHDRAW = [
    """
CREATE TRIGGER raid_search_withdraw AFTER UPDATE ON raids FOR EACH ROW
WHEN NEW.deleted_at IS NOT NULL OR NOT (NEW.access_type = 'open' OR (NEW.access_type = 'embargoed'
     AND NEW.embargo_expiry IS NOT NULL AND NEW.embargo_expiry < date('now')))
BEGIN
  INSERT INTO raid_search (raid_id, in_full, deleted, withdrawn, source_updated_at)
  VALUES (NEW.id, 0, 0, 1, NEW.updated_at)
  ON CONFLICT (raid_id) DO UPDATE SET
    withdrawn = (withdrawn OR in_full OR NEW.deleted_at IS NOT NULL),
    source_updated_at = max(coalesce(source_updated_at, ''), NEW.updated_at);
END
""",
    """
CREATE TRIGGER raid_search_withdraw_deleted AFTER DELETE ON raids FOR EACH ROW
BEGIN
  UPDATE raid_search SET withdrawn = 1 WHERE raid_id = OLD.id;
END
""",
]

# FTS5 over the terms columns (external content), kept in step by triggers; the terms are
# already tokenised by exporter.discovery.text, so unicode61 only splits them at spaces.
SQLITE_FTS = [
    "CREATE VIRTUAL TABLE raid_search_fts USING fts5(title_terms, body_terms, content='raid_search', content_rowid='raid_id', tokenize='unicode61 remove_diacritics 0')",
    """
CREATE TRIGGER raid_search_fts_insert AFTER INSERT ON raid_search BEGIN
  INSERT INTO raid_search_fts(rowid, title_terms, body_terms) VALUES (NEW.raid_id, NEW.title_terms, NEW.body_terms);
END
""",
    """
CREATE TRIGGER raid_search_fts_delete AFTER DELETE ON raid_search BEGIN
  INSERT INTO raid_search_fts(raid_search_fts, rowid, title_terms, body_terms) VALUES ('delete', OLD.raid_id, OLD.title_terms, OLD.body_terms);
END
""",
    """
CREATE TRIGGER raid_search_fts_update AFTER UPDATE OF title_terms, body_terms ON raid_search BEGIN
  INSERT INTO raid_search_fts(raid_search_fts, rowid, title_terms, body_terms) VALUES ('delete', OLD.raid_id, OLD.title_terms, OLD.body_terms);
  INSERT INTO raid_search_fts(rowid, title_terms, body_terms) VALUES (NEW.raid_id, NEW.title_terms, NEW.body_terms);
END
""",
]


def upgrade() -> None:
    op.create_table(
        "raid_search",
        sa.Column("raid_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=True),
        sa.Column("agency_id", sa.String(length=64), nullable=True),
        sa.Column("service_point_id", sa.BigInteger(), nullable=True),
        sa.Column("access_type", sa.String(length=16), nullable=True),
        sa.Column("in_full", sa.Boolean(), nullable=False),
        sa.Column("embargo_expiry", sa.Date(), nullable=True),
        sa.Column("created", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("title_terms", sa.Text(), nullable=True),
        sa.Column("body_terms", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("source_updated_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("datestamp", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("raid_id", name=op.f("pk_raid_search")),
    )
    op.create_index("ix_raid_search_datestamp_raid_id", "raid_search", ["datestamp", "raid_id"], unique=False)
    op.create_index("ix_raid_search_agency_id_datestamp", "raid_search", ["agency_id", "datestamp", "raid_id"], unique=False)
    op.create_index("ix_raid_search_start_date_raid_id", "raid_search", ["start_date", "raid_id"], unique=False)
    op.create_index("ix_raid_search_embargo_expiry", "raid_search", ["embargo_expiry"], unique=False, postgresql_where=sa.text("NOT in_full AND NOT deleted"), sqlite_where=sa.text("NOT in_full AND NOT deleted"))
    op.create_index("ix_raid_search_withdrawn", "raid_search", ["raid_id"], unique=False, postgresql_where=sa.text("withdrawn"), sqlite_where=sa.text("withdrawn"))
    op.create_index(op.f("ix_raid_search_handle"), "raid_search", ["handle"], unique=False)
    op.create_index(op.f("ix_raid_search_service_point_id"), "raid_search", ["service_point_id"], unique=False)
    op.create_table(
        "search_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("scanned_up_to", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reconciled_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_until", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_search_state")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE raid_search ADD COLUMN tsv tsvector")
        op.execute("CREATE INDEX ix_raid_search_tsv ON raid_search USING gin (tsv)")
        op.execute(PG_WITHDRAW)
    else:
        for statement in SQLITE_FTS + SQLITE_WITHDRAW:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS raid_search_withdraw ON raids")
        op.execute("DROP FUNCTION IF EXISTS raid_search_withdraw()")
    else:
        for name in ("raid_search_withdraw", "raid_search_withdraw_deleted", "raid_search_fts_insert", "raid_search_fts_delete", "raid_search_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS raid_search_fts")
    op.drop_table("search_state")
    op.drop_table("raid_search")
