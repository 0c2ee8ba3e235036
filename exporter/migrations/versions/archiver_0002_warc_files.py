"""archiver: archive_warc_files (a WARC/1.1 file and its CDXJ index per archiving part)

Revision ID: archiver_0002
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "archiver_0002"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_warc_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("index_key", sa.String(length=1024), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(op.f("ix_archive_warc_files_job_id"), "archive_warc_files", ["job_id"], unique=False)
    op.create_index(op.f("ix_archive_warc_files_created_at"), "archive_warc_files", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_archive_warc_files_created_at"), table_name="archive_warc_files")
    op.drop_index(op.f("ix_archive_warc_files_job_id"), table_name="archive_warc_files")
    op.drop_table("archive_warc_files")
