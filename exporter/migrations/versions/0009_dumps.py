"""dumps: dump_feeds, dump_members, dump_changesets, dump_objects

Revision ID: 0009
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0009"
down_revision = "0002"
branch_labels = ("dumps",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dump_feeds",
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("watermark_updated_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("watermark_id", sa.BigInteger(), nullable=True),
        sa.Column("as_of", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cutoff", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("snapshot_seq", sa.Integer(), nullable=True),
        sa.Column("snapshot_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency"], ["registration_agencies.id"], name=op.f("fk_dump_feeds_agency_registration_agencies")),
        sa.PrimaryKeyConstraint("agency", name=op.f("pk_dump_feeds")),
    )
    op.create_table(
        "dump_members",
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("raid_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("in_full", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("agency", "raid_id", name=op.f("pk_dump_members")),
    )
    op.create_table(
        "dump_changesets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("snapshot_sha256", sa.String(length=64), nullable=True),
        sa.Column("latest", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dump_changesets")),
        sa.UniqueConstraint("agency", "seq", name=op.f("uq_dump_changesets_agency")),
    )
    op.create_table(
        "dump_objects",
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_dump_objects")),
    )
    op.create_index("ix_dump_objects_agency_seq", "dump_objects", ["agency", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dump_objects_agency_seq", table_name="dump_objects")
    op.drop_table("dump_objects")
    op.drop_table("dump_changesets")
    op.drop_table("dump_members")
    op.drop_table("dump_feeds")
