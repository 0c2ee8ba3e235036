"""raids: registration_agencies, service_points, raids (+ updated_at trigger)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0002"
down_revision = "0001"
branch_labels = ("raids",)
depends_on = None

# Any UPDATE that does not set updated_at itself (bulk SQL, a console session) still moves
# updated_at and version, so incremental exports never miss a change.
PG_TRIGGER = """
CREATE OR REPLACE FUNCTION raids_touch() RETURNS trigger AS $$
BEGIN
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := clock_timestamp();
    IF NEW.version IS NOT DISTINCT FROM OLD.version THEN
      NEW.version := OLD.version + 1;
    END IF;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER raids_touch BEFORE UPDATE ON raids FOR EACH ROW EXECUTE FUNCTION raids_touch();
"""

# Same format as SQLAlchemy's SQLite DATETIME ("YYYY-MM-DD HH:MM:SS.ffffff") so keyset
# comparisons of the stored strings stay in time order.
SQLITE_TRIGGER = """
CREATE TRIGGER raids_touch AFTER UPDATE ON raids FOR EACH ROW
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
  UPDATE raids SET
    updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') || '000',
    version = CASE WHEN NEW.version IS OLD.version THEN OLD.version + 1 ELSE NEW.version END
  WHERE id = NEW.id;
END
"""


def upgrade() -> None:
    op.create_table(
        "registration_agencies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("ror", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_agencies")),
        sa.UniqueConstraint("ror", name=op.f("uq_registration_agencies_ror")),
    )
    op.create_table(
        "service_points",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["registration_agencies.id"], name=op.f("fk_service_points_agency_id_registration_agencies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_points")),
    )
    op.create_index(op.f("ix_service_points_agency_id"), "service_points", ["agency_id"], unique=False)
    op.create_table(
        "raids",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("service_point_id", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("access_type", sa.String(length=16), nullable=False),
        sa.Column("access_statement", sa.Text(), nullable=True),
        sa.Column("access_statement_language", sa.String(length=64), nullable=True),
        sa.Column("embargo_expiry", sa.Date(), nullable=True),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["service_point_id"], ["service_points.id"], name=op.f("fk_raids_service_point_id_service_points")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raids")),
        sa.UniqueConstraint("handle", name=op.f("uq_raids_handle")),
    )
    op.create_index(op.f("ix_raids_access_type"), "raids", ["access_type"], unique=False)
    op.create_index("ix_raids_updated_at_id", "raids", ["updated_at", "id"], unique=False)
    op.create_index("ix_raids_service_point_id_id", "raids", ["service_point_id", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS raids_touch ON raids")
        op.execute("DROP FUNCTION IF EXISTS raids_touch()")
    else:
        op.execute("DROP TRIGGER IF EXISTS raids_touch")
    op.drop_index("ix_raids_service_point_id_id", table_name="raids")
    op.drop_index("ix_raids_updated_at_id", table_name="raids")
    op.drop_index(op.f("ix_raids_access_type"), table_name="raids")
    op.drop_table("raids")
    op.drop_index(op.f("ix_service_points_agency_id"), table_name="service_points")
    op.drop_table("service_points")
    op.drop_table("registration_agencies")
