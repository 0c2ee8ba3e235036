"""webhooks: job_callbacks, webhook_notifications, webhook_deliveries

Revision ID: 0005
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "0005"
down_revision = "0001"
branch_labels = ("webhooks",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_callbacks_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_callbacks")),
        sa.UniqueConstraint("job_id", "url", name=op.f("uq_job_callbacks_job_id")),
    )
    with op.batch_alter_table("job_callbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_callbacks_job_id"), ["job_id"], unique=False)

    op.create_table(
        "webhook_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("callback_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["callback_id"], ["job_callbacks.id"], name=op.f("fk_webhook_notifications_callback_id_job_callbacks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_webhook_notifications_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_notifications")),
        sa.UniqueConstraint("callback_id", "event", name=op.f("uq_webhook_notifications_callback_id")),
    )
    with op.batch_alter_table("webhook_notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_notifications_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_notifications_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_notifications_next_attempt_at"), ["next_attempt_at"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", exporter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["notification_id"], ["webhook_notifications.id"], name=op.f("fk_webhook_deliveries_notification_id_webhook_notifications"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_webhook_deliveries_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_notification_id"), ["notification_id"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_notifications")
    op.drop_table("job_callbacks")
