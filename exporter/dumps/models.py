"""Tables of the dumps: the feed of each agency, the raids it holds, its change sets and their objects."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime, utcnow
from ..raids.models import RaidId


class DumpFeed(Base):
    """One agency's dump: the last published seq (the compare-and-set arbiter) and the internal watermark."""

    __tablename__ = "dump_feeds"

    agency: Mapped[str] = mapped_column(ForeignKey("registration_agencies.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Internal: the newest (updated_at, id) covered; never published (issue 8).
    watermark_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    watermark_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    snapshot_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    snapshot_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DumpMember(Base):
    """A raid the agency's dump currently holds, and whether in full (so a change that hides it gets a tombstone)."""

    __tablename__ = "dump_members"

    agency: Mapped[str] = mapped_column(String(64), primary_key=True)
    raid_id: Mapped[int] = mapped_column(RaidId, primary_key=True, autoincrement=False)
    handle: Mapped[str] = mapped_column(String(255))
    in_full: Mapped[bool] = mapped_column(Boolean)


class DumpChangeset(Base):
    """One published change set: its manifest, the snapshot taken at it (if any) and the LATEST.json naming it.

    The bodies are kept so a run that finds the row but not the objects (a crash after the
    commit) rewrites them byte for byte."""

    __tablename__ = "dump_changesets"
    __table_args__ = (UniqueConstraint("agency", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[str | None] = mapped_column(Text, nullable=True)
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    latest: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DumpObject(Base):
    """An object a kept change set names (part, manifest, snapshot manifest): what /public/dumps serves and cleanup keeps."""

    __tablename__ = "dump_objects"
    __table_args__ = (Index("ix_dump_objects_agency_seq", "agency", "seq"),)

    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    agency: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
