"""publish: zenodo_concepts, zenodo_versions, zenodo_files

Revision ID: publish_0001
Revises: 0001
Depends on: 0002 (registration_agencies)
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "publish_0001"
down_revision = "0001"
branch_labels = ("publish",)
depends_on = "0002"


def upgrade() -> None:
    op.create_table(
        "zenodo_concepts",
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("auto_publish", sa.Boolean(), nullable=False),
        sa.Column("concept_record_id", sa.String(length=64), nullable=True),
        sa.Column("concept_doi", sa.String(length=255), nullable=True),
        sa.Column("latest_record_id", sa.String(length=64), nullable=True),
        sa.Column("holder_job_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["registration_agencies.id"], name=op.f("fk_zenodo_concepts_agency_id_registration_agencies")),
        sa.PrimaryKeyConstraint("agency_id", name=op.f("pk_zenodo_concepts")),
    )
    op.create_table(
        "zenodo_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("export_job_id", sa.String(length=36), nullable=False),
        sa.Column("publish_job_id", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("archive_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("draft_id", sa.String(length=64), nullable=True),
        sa.Column("doi", sa.String(length=255), nullable=True),
        sa.Column("concept_doi", sa.String(length=255), nullable=True),
        sa.Column("record_url", sa.String(length=1024), nullable=True),
        sa.Column("previous_doi", sa.String(length=255), nullable=True),
        sa.Column("same_as_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["registration_agencies.id"], name=op.f("fk_zenodo_versions_agency_id_registration_agencies")),
        sa.ForeignKeyConstraint(["export_job_id"], ["jobs.id"], name=op.f("fk_zenodo_versions_export_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zenodo_versions")),
        sa.UniqueConstraint("export_job_id", name=op.f("uq_zenodo_versions_export_job_id")),
    )
    with op.batch_alter_table("zenodo_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_zenodo_versions_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_zenodo_versions_state"), ["state"], unique=False)
    op.create_table(
        "zenodo_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("artifact_key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("committed_md5", sa.String(length=32), nullable=True),
        sa.Column("committed_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["zenodo_versions.id"], name=op.f("fk_zenodo_files_version_id_zenodo_versions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zenodo_files")),
        sa.UniqueConstraint("version_id", "key", name=op.f("uq_zenodo_files_version_id")),
    )
    with op.batch_alter_table("zenodo_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_zenodo_files_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("zenodo_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_zenodo_files_version_id"))
    op.drop_table("zenodo_files")
    with op.batch_alter_table("zenodo_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_zenodo_versions_state"))
        batch_op.drop_index(batch_op.f("ix_zenodo_versions_agency_id"))
    op.drop_table("zenodo_versions")
    op.drop_table("zenodo_concepts")
