"""Archiver tables: portals, resources, one archival record per resource, stored versions,
and the per-host request slots that keep the archiver polite across workers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, and_, or_, select
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..db import Base, UTCDateTime, utcnow
from ..models import _iso, new_id

RESOURCE_NAMESPACE = uuid.UUID("5b1d0f3e-4f0c-4a59-9a43-0e6c2f3a7c11")

# CKAN archiver's status codes and texts, which portal users already know.
STATUSES = {
    0: "Archived successfully",
    1: "Content has not changed",
    10: "URL invalid",
    11: "URL request failed",
    12: "Download error",
    21: "Chose not to download",
    22: "Download failure",
    23: "System error during archival",
}
OK_STATUSES = (0, 1)


def is_status_broken(status_id: int) -> bool | None:
    """As in CKAN: 0-9 fine, 10-19 broken, 20+ unknown; except 'Chose not to download',
    which Exporter only records after the server answered (so the link works)."""
    if status_id < 10 or status_id == 21:
        return False
    if status_id < 20:
        return True
    return None


def resource_id_for(portal_id: str | None, key: str) -> str:
    """Stable resource id: a portal's resource by its CKAN id, an ad-hoc one by its URL."""
    return str(uuid.uuid5(RESOURCE_NAMESPACE, f"{portal_id or 'adhoc'}\n{key}"))


class Portal(Base):
    """A registered CKAN portal whose resources are swept and archived."""

    __tablename__ = "archive_portals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(String(1024))
    api_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    write_back: Mapped[bool] = mapped_column(Boolean, default=False)
    link_check_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_swept_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sweep_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "base_url": self.base_url,
            "has_token": bool(self.api_token),
            "write_back": self.write_back,
            "link_check_only": self.link_check_only,
            "created_at": _iso(self.created_at),
            "last_swept_at": _iso(self.last_swept_at),
            "last_sweep_job_id": self.last_sweep_job_id,
        }


class Resource(Base):
    """One URL to archive: a portal's resource, or an ad-hoc URL (portal_id NULL)."""

    __tablename__ = "archive_resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    portal_id: Mapped[str | None] = mapped_column(ForeignKey("archive_portals.id", ondelete="CASCADE"), nullable=True, index=True)
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True)  # the portal's resource id
    url: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    format: Mapped[str | None] = mapped_column(String(100), nullable=True)
    package_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    package_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    organization: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    link_check_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # left the portal
    private: Mapped[bool] = mapped_column(Boolean, default=False)  # from a private CKAN dataset
    missing_sweeps: Mapped[int] = mapped_column(Integer, default=0)  # complete sweeps in a row that did not list it
    missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @hybrid_property
    def open_to_all(self) -> bool:
        """Whether its stored copy may be served without a token: not from a private dataset and,
        for a portal's resource, listed by the portal's last complete sweep. A dataset that left
        the listing may have been made private (to organizations our token does not read) or
        withdrawn; its copies are then for operators until the portal lists it as public again."""
        return not self.private and (self.portal_id is None or (self.gone_at is None and not self.missing_sweeps))

    @open_to_all.inplace.expression
    @classmethod
    def _open_to_all_expression(cls):
        return and_(cls.private.is_(False), or_(cls.portal_id.is_(None), and_(cls.gone_at.is_(None), cls.missing_sweeps == 0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "portal_id": self.portal_id,
            "external_id": self.external_id,
            "url": self.url,
            "name": self.name,
            "format": self.format,
            "package_id": self.package_id,
            "package_name": self.package_name,
            "organization": self.organization,
            "link_check_only": self.link_check_only,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "gone_at": _iso(self.gone_at),
            "private": self.private,
            "missing_sweeps": self.missing_sweeps or 0,
            "open_to_all": self.open_to_all,
        }


class Archival(Base):
    """The latest attempt on a resource and what its last success stored (CKAN's `archival`)."""

    __tablename__ = "archivals"

    resource_id: Mapped[str] = mapped_column(ForeignKey("archive_resources.id", ondelete="CASCADE"), primary_key=True)
    status_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str | None] = mapped_column(String(64), nullable=True)
    is_broken: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    url_redirected_to: Mapped[str | None] = mapped_column(Text, nullable=True)
    checked_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # the URL etag/last_modified belong to
    etag: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cache_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    cache_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mimetype: Mapped[str | None] = mapped_column(String(255), nullable=True)
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_failure: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fresh_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # HTTP attempts of the latest check
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status_id": self.status_id,
            "status": self.status,
            "is_broken": self.is_broken,
            "reason": self.reason,
            "url_redirected_to": self.url_redirected_to,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "cache_key": self.cache_key,
            "cache_url": self.cache_url,
            "size": self.size,
            "mimetype": self.mimetype,
            "md5": self.md5,
            "sha256": self.sha256,
            "first_failure": _iso(self.first_failure),
            "failure_count": self.failure_count,
            "last_success": _iso(self.last_success),
            "fresh_until": _iso(self.fresh_until),
            "next_check_at": _iso(self.next_check_at),
            "checked_at": _iso(self.checked_at),
            "attempts": self.attempts,
            "updated_at": _iso(self.updated_at),
        }


class WarcFile(Base):
    """A WARC/1.1 file of one part of a sweep (or URL list) and its CDXJ index beside it."""

    __tablename__ = "archive_warc_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    index_key: Mapped[str] = mapped_column(String(1024))
    records: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ArchiveVersion(Base):
    """One stored copy of a resource; pruning keeps the newest K per resource."""

    __tablename__ = "archive_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("archive_resources.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    mimetype: Mapped[str | None] = mapped_column(String(255), nullable=True)
    etag: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "md5": self.md5,
            "sha256": self.sha256,
            "mimetype": self.mimetype,
            "created_at": _iso(self.created_at),
            "deleted_at": _iso(self.deleted_at),
        }


class HostSlot(Base):
    """Leases that bound concurrent requests per host; slot -1 holds the next allowed start."""

    __tablename__ = "archive_host_slots"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(36), nullable=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def stored_keys(session: Session, keys: list[str]) -> set[str]:
    """Keys of the batch named by a stored version not deleted, or by an archival record's cache key."""
    named = set(session.scalars(select(ArchiveVersion.key).where(ArchiveVersion.key.in_(keys), ArchiveVersion.deleted_at.is_(None))))
    return named | set(session.scalars(select(Archival.cache_key).where(Archival.cache_key.in_(keys))))


def warc_keys(session: Session, keys: list[str]) -> set[str]:
    """Keys of the batch that a WARC file row not deleted names (the WARC or its index)."""
    rows = session.execute(select(WarcFile.key, WarcFile.index_key).where((WarcFile.key.in_(keys)) | (WarcFile.index_key.in_(keys)), WarcFile.deleted_at.is_(None)))
    return {k for row in rows for k in row if k in keys}
