"""Tables of the RAiD registry: registration agencies, service points and raids."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, Text, event, inspect
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime, utcnow

# SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid); PostgreSQL gets a bigint.
RaidId = BigInteger().with_variant(Integer(), "sqlite")


class RegistrationAgency(Base):
    """A registration agency, keyed by the last part of its ROR (e.g. 038sjwq14)."""

    __tablename__ = "registration_agencies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ror: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServicePoint(Base):
    """A service point (numeric id like 20000000) of one agency; it owns raids."""

    __tablename__ = "service_points"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    agency_id: Mapped[str] = mapped_column(ForeignKey("registration_agencies.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Raid(Base):
    """One raid: its RAiD API JSON plus the columns exports filter and project on.

    The access columns, title and created_at are derived from `record` by the domain layer
    (exporter.raids.registry) on every write; updated_at and version move on every change
    (a database trigger bumps them for SQL that forgets to).
    """

    __tablename__ = "raids"
    __table_args__ = (
        Index("ix_raids_updated_at_id", "updated_at", "id"),
        Index("ix_raids_service_point_id_id", "service_point_id", "id"),
    )

    id: Mapped[int] = mapped_column(RaidId, primary_key=True, autoincrement=True)
    handle: Mapped[str] = mapped_column(String(255), unique=True)
    service_point_id: Mapped[int] = mapped_column(ForeignKey("service_points.id"))
    record: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    access_type: Mapped[str] = mapped_column(String(16), index=True)
    access_statement: Mapped[str | None] = mapped_column(Text, nullable=True)
    access_statement_language: Mapped[str | None] = mapped_column(String(64), nullable=True)
    embargo_expiry: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@event.listens_for(Raid, "before_update")
def _touch(_mapper, _conn, raid: Raid) -> None:
    """Any ORM change to a raid moves updated_at and version, even one that forgot to."""
    state = inspect(raid)
    if not state.attrs.updated_at.history.has_changes():
        raid.updated_at = utcnow()
    if not state.attrs.version.history.has_changes():
        raid.version = (raid.version or 0) + 1
