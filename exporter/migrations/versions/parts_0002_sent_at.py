"""jobs.sent_at, job_parts.sent_at: whether the broker took the work's message

Revision ID: parts_0002
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "parts_0002"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("jobs", "job_parts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("sent_at", exporter.db.UTCDateTime(timezone=True), nullable=True))
    # Work already waiting was sent by the code before this column: do not send it again.
    op.execute("UPDATE jobs SET sent_at = queued_at WHERE status = 'pending'")
    op.execute("UPDATE job_parts SET sent_at = queued_at WHERE status = 'pending'")


def downgrade() -> None:
    for table in ("job_parts", "jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("sent_at")
