"""archiver: portals, resources, archivals, versions, host slots

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0003"
down_revision = "0001"
branch_labels = ("archiver",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_portals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_url", sa.String(length=1024), nullable=False),
        sa.Column("api_token", sa.Text(), nullable=True),
        sa.Column("write_back", sa.Boolean(), nullable=False),
        sa.Column("link_check_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_swept_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sweep_job_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_portals")),
        sa.UniqueConstraint("name", name=op.f("uq_archive_portals_name")),
    )
    op.create_table(
        "archive_resources",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("portal_id", sa.String(length=36), nullable=True),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=True),
        sa.Column("format", sa.String(length=100), nullable=True),
        sa.Column("package_id", sa.String(length=100), nullable=True),
        sa.Column("package_name", sa.String(length=200), nullable=True),
        sa.Column("organization", sa.String(length=200), nullable=True),
        sa.Column("link_check_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("gone_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["portal_id"], ["archive_portals.id"], name=op.f("fk_archive_resources_portal_id_archive_portals"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_resources")),
    )
    op.create_index(op.f("ix_archive_resources_portal_id"), "archive_resources", ["portal_id"], unique=False)
    op.create_index(op.f("ix_archive_resources_organization"), "archive_resources", ["organization"], unique=False)
    op.create_table(
        "archivals",
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("status_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("is_broken", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("url_redirected_to", sa.Text(), nullable=True),
        sa.Column("checked_url", sa.Text(), nullable=True),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("cache_key", sa.String(length=1024), nullable=True),
        sa.Column("cache_url", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("mimetype", sa.String(length=255), nullable=True),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("first_failure", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("last_success", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fresh_until", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checked_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["resource_id"], ["archive_resources.id"], name=op.f("fk_archivals_resource_id_archive_resources"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_archivals")),
    )
    op.create_index(op.f("ix_archivals_next_check_at"), "archivals", ["next_check_at"], unique=False)
    op.create_table(
        "archive_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("mimetype", sa.String(length=255), nullable=True),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["resource_id"], ["archive_resources.id"], name=op.f("fk_archive_versions_resource_id_archive_resources"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_versions")),
    )
    op.create_index(op.f("ix_archive_versions_resource_id"), "archive_versions", ["resource_id"], unique=False)
    op.create_table(
        "archive_host_slots",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=36), nullable=True),
        sa.Column("until", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("host", "slot", name=op.f("pk_archive_host_slots")),
    )


def downgrade() -> None:
    op.drop_table("archive_host_slots")
    op.drop_index(op.f("ix_archive_versions_resource_id"), table_name="archive_versions")
    op.drop_table("archive_versions")
    op.drop_index(op.f("ix_archivals_next_check_at"), table_name="archivals")
    op.drop_table("archivals")
    op.drop_index(op.f("ix_archive_resources_organization"), table_name="archive_resources")
    op.drop_index(op.f("ix_archive_resources_portal_id"), table_name="archive_resources")
    op.drop_table("archive_resources")
    op.drop_table("archive_portals")
