"""Tables of the publish family: an agency's Zenodo concept, each export's version, each version's files.

They hold every step a publication has reached, so a run killed anywhere resumes from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime, utcnow

# A version's states, in the order a publication goes through them.
NEW, CREATING, DRAFT, PUBLISHING, PUBLISHED = "new", "creating", "draft", "publishing", "published"
UNCHANGED = "unchanged"  # its export equals the last published version's: nothing was sent
DISCARDED = "discarded"  # its draft was deleted on Zenodo so a newer export could become the next version
OPEN_STATES = (CREATING, DRAFT, PUBLISHING)


class ZenodoConcept(Base):
    """One agency's concept record on Zenodo: every version of its public export hangs under it."""

    __tablename__ = "zenodo_concepts"

    agency_id: Mapped[str] = mapped_column(ForeignKey("registration_agencies.id"), primary_key=True)
    auto_publish: Mapped[bool] = mapped_column(Boolean, default=False)
    concept_record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # Zenodo's parent id
    concept_doi: Mapped[str | None] = mapped_column(String(255), nullable=True)
    latest_record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the newest published version
    holder_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the publish job working on it now
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ZenodoVersion(Base):
    """One export's publication: its draft, then its published record; never two for one export."""

    __tablename__ = "zenodo_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("registration_agencies.id"), index=True)
    export_job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    publish_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=NEW, index=True)
    version: Mapped[str] = mapped_column(String(32))  # the export's UTC timestamp
    archive_sha256: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str] = mapped_column(String(64))  # of the records themselves (raids.jsonl, tombstones)
    draft_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # Zenodo's record id, draft then published
    doi: Mapped[str | None] = mapped_column(String(255), nullable=True)
    concept_doi: Mapped[str | None] = mapped_column(String(255), nullable=True)
    record_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    previous_doi: Mapped[str | None] = mapped_column(String(255), nullable=True)
    same_as_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # unchanged: the published version it equals
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def record_id(self) -> str | None:
        return self.draft_id if self.state == PUBLISHED else None


class ZenodoFile(Base):
    """One file of a version: what we send (size, md5) and what Zenodo answered when it was committed."""

    __tablename__ = "zenodo_files"
    __table_args__ = (UniqueConstraint("version_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("zenodo_versions.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))  # the file name on Zenodo
    artifact_key: Mapped[str] = mapped_column(String(1024))  # where the bytes are in our storage
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    committed_md5: Mapped[str | None] = mapped_column(String(32), nullable=True)  # Zenodo's checksum once committed
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
