"""Tables of the search index: one row per raid holding only its public view, and the refresh state.

`raid_search` is the public copy the search page and OAI-PMH read. A raid published in full
(open, or embargoed with its embargo passed) has its title, summary and search terms here;
any other raid has only its handle and public dates. Deleted raids stay as tombstones
(`deleted`), for OAI-PMH's persistent deleted records. `datestamp` is when the public view
last changed, which is what an OAI-PMH harvester must be told: a private edit to an
embargoed raid changes nothing public and moves nothing, while an embargo that expires
changes the public view without any write to the raid.

Each backend adds one object of its own in the migration (never in these models):
PostgreSQL a `tsv` tsvector column with a GIN index, SQLite an FTS5 table
`raid_search_fts` fed by triggers. MIGRATION_ONLY names them so the schema comparison
(tests/test_schema.py) leaves them out on purpose.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime

RaidId = BigInteger().with_variant(Integer(), "sqlite")  # the rowid on SQLite, as raids.id

# Objects the migration creates on one backend only, by (kind, name).
MIGRATION_ONLY = {
    ("column", "raid_search.tsv"),  # PostgreSQL: the tsvector the GIN index covers
    ("index", "ix_raid_search_tsv"),  # PostgreSQL: GIN over tsv
    ("table", "raid_search_fts"),  # SQLite: the FTS5 table and its shadow tables
    ("table", "raid_search_fts_data"),
    ("table", "raid_search_fts_idx"),
    ("table", "raid_search_fts_docsize"),
    ("table", "raid_search_fts_config"),
}


class RaidSearch(Base):
    """The public view of one raid, as the search index and OAI-PMH see it."""

    __tablename__ = "raid_search"
    __table_args__ = (
        Index("ix_raid_search_datestamp_raid_id", "datestamp", "raid_id"),
        Index("ix_raid_search_agency_id_datestamp", "agency_id", "datestamp", "raid_id"),
        Index("ix_raid_search_start_date_raid_id", "start_date", "raid_id"),
        Index("ix_raid_search_embargo_expiry", "embargo_expiry", postgresql_where=text("NOT in_full AND NOT deleted"), sqlite_where=text("NOT in_full AND NOT deleted")),
        # only the few rows a write withdrew: an index of the flag itself would tempt the planner into every search
        Index("ix_raid_search_withdrawn", "raid_id", postgresql_where=text("withdrawn"), sqlite_where=text("withdrawn")),
    )

    raid_id: Mapped[int] = mapped_column(RaidId, primary_key=True, autoincrement=False)
    handle: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service_point_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    access_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    in_full: Mapped[bool] = mapped_column(Boolean, default=False)
    embargo_expiry: Mapped[date | None] = mapped_column(Date, nullable=True)
    created: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    start_date: Mapped[date | None] = mapped_column(Date, nullable=True)  # in full only
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)  # in full only
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # in full only
    title_terms: Mapped[str | None] = mapped_column(Text, nullable=True)  # SQLite: what FTS5 indexes
    body_terms: Mapped[str | None] = mapped_column(Text, nullable=True)
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)  # sha256 of the public view
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # raids.updated_at indexed
    datestamp: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # public view last changed
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)  # hidden until re-indexed (set by a trigger)


class SearchState(Base):
    """Where the incremental refresh of an index stands, and who is refreshing it (a lease)."""

    __tablename__ = "search_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    scanned_up_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reconciled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
