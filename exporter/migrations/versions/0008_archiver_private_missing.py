"""archiver: archive_resources.private, missing_sweeps, missing_since

Revision ID: 0008
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0008"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive_resources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("missing_sweeps", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("missing_since", exporter.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("archive_resources", schema=None) as batch_op:
        batch_op.alter_column("private", server_default=None)
        batch_op.alter_column("missing_sweeps", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("archive_resources", schema=None) as batch_op:
        batch_op.drop_column("missing_since")
        batch_op.drop_column("missing_sweeps")
        batch_op.drop_column("private")
