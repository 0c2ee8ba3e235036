"""tiles: tile_layers (registered sources of WorldCRS84Quad tiles)

Revision ID: tiles_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = "tiles_0001"
down_revision = "0001"
branch_labels = ("tiles",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tile_layers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("url_template", sa.Text(), nullable=True),
        sa.Column("folder", sa.Text(), nullable=True),
        sa.Column("tms", sa.Boolean(), nullable=False),
        sa.Column("max_zoom", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("tiles_measured", sa.BigInteger(), nullable=False),
        sa.Column("bytes_measured", sa.BigInteger(), nullable=False),
        sa.Column("created_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", exporter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tile_layers")),
        sa.UniqueConstraint("name", name=op.f("uq_tile_layers_name")),
        sa.UniqueConstraint("record_id", name=op.f("uq_tile_layers_record_id")),
    )


def downgrade() -> None:
    op.drop_table("tile_layers")
