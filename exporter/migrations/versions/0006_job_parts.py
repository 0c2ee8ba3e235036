"""parts: job_fanouts, job_parts (a job's run fans out parts that finish it)

Revision ID: 0006
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0006"
down_revision = "0001"
branch_labels = ("parts",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_fanouts",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_fanouts_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_fanouts")),
    )
    op.create_table(
        "job_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("recoveries", sa.Integer(), nullable=False),
        sa.Column("queued_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_parts_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_parts")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_job_parts_job_id")),
    )
    with op.batch_alter_table("job_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_parts_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_parts_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_parts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_parts_status"))
        batch_op.drop_index(batch_op.f("ix_job_parts_job_id"))
    op.drop_table("job_parts")
    op.drop_table("job_fanouts")
