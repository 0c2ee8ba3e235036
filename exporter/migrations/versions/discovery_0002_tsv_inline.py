"""discovery: keep raid_search.tsv inline and uncompressed (PostgreSQL)

Revision ID: discovery_0002
Revises: discovery_0001

A search reads the tsvector of every candidate row (to rank it, and to test the words the
GIN index cannot answer, such as an excluded one). TOASTed, each read was an index lookup
in the TOAST table and a pglz decompression: 5-8x the cost of reading it from the row
itself (measured over 20,000 rows of the benchmark's raids), for a saving of a quarter of
its size. STORAGE MAIN keeps the value in the row, and toast_tuple_target at its maximum
leaves rows that fit a page uncompressed; a value too large for a page is still moved out
of line. Rows keep how they were stored until they are written again (a rebuild rewrites
all of them).
"""

from alembic import op

revision = "discovery_0002"
down_revision = "discovery_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE raid_search ALTER COLUMN tsv SET STORAGE MAIN")
        op.execute("ALTER TABLE raid_search SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE raid_search RESET (toast_tuple_target)")
        op.execute("ALTER TABLE raid_search ALTER COLUMN tsv SET STORAGE EXTENDED")
