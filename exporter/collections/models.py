"""Tables of the collections family: projects, what their sources held, batches, each batch's files, decisions, e-mails.

Every step a batch reaches is a row or a column here, so a run killed anywhere resumes from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime, utcnow
from ..errors import InvalidRequest

# The family's job kinds.
COLLECT, PUBLISH, IMPORT = "collect_batch", "publish_collection", "import_collection"

# A project's states.
ACTIVE, COMPLETE, CANCELLED = "active", "complete", "cancelled"
PROJECT_STATES = (ACTIVE, COMPLETE, CANCELLED)

# A batch's states, in the order a batch goes through them.
RETRIEVING, CONVERTING, AWAITING_APPROVAL = "retrieving", "converting", "awaiting_approval"
APPROVED, DECLINED, EXPIRED = "approved", "declined", "expired"
PUBLISHING, PUBLISHED, IMPORTED, FAILED = "publishing", "published", "imported", "failed"
BATCH_STATES = (RETRIEVING, CONVERTING, AWAITING_APPROVAL, APPROVED, DECLINED, EXPIRED, PUBLISHING, PUBLISHED, IMPORTED, FAILED)
PUBLIC_STATES = (PUBLISHED, IMPORTED)  # the states whose files and manifest anyone may read

# The import of a published batch into Zooniverse.
IMPORT_NONE, IMPORT_CREATING_SET, IMPORT_REQUESTING, IMPORT_RUNNING, IMPORT_DONE = None, "creating_set", "requesting", "running", "done"


class CollectionProject(Base):
    """A citizen-science project: its owner, its Zooniverse project and subject set, its source and the grant to read it."""

    __tablename__ = "collection_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner_email: Mapped[str] = mapped_column(String(320))
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)  # signed webhooks to the owner
    zooniverse_project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subject_set_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: create one at the first import
    source: Mapped[str] = mapped_column(String(1024))  # a local folder or s3://bucket/prefix
    grant_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # sha256 of the grant token (the owner's bearer token)
    grant_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    grant_scope: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # the source the grant is good for
    grant_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    data_rights_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE, index=True)
    poll_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # one poll of a project at a time
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_poll_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_poll_found: Mapped[int] = mapped_column(Integer, default=0)  # new files the last poll saw
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CollectionSourceFile(Base):
    """A file a poll saw in a project's source, by name + size + mtime/etag: never taken twice; waiting until a batch takes it."""

    __tablename__ = "collection_source_files"
    __table_args__ = (UniqueConstraint("project_id", "name", "signature"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("collection_projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))  # its path under the source
    size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(128))  # "<size>:<mtime ns>" for a folder, "<size>:<etag>" for S3
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("collection_batches.id", ondelete="SET NULL"), nullable=True, index=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CollectionBatch(Base):
    """Files a poll found, retrieved into quarantine and converted by one job, approved or declined as one."""

    __tablename__ = "collection_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("collection_projects.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)  # the collect_batch job
    publish_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    import_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default=RETRIEVING, index=True)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    retrieved: Mapped[int] = mapped_column(Integer, default=0)
    converted: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    waiting: Mapped[int] = mapped_column(Integer, default=0)  # files left for a later batch by the cap
    cap: Mapped[int] = mapped_column(Integer, default=0)
    approval_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    manifest_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    manifest_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    import_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    import_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    manifest_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    imported_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failed_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    originals_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # its quarantined copies, by cleanup (retention)
    converted_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # its converted images in quarantine, by cleanup
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CollectionFile(Base):
    """One file of a batch: its quarantined copy and checksum, its conversion or why it was refused, its metadata."""

    __tablename__ = "collection_files"
    __table_args__ = (UniqueConstraint("batch_id", "source_file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("collection_batches.id", ondelete="CASCADE"), index=True)
    source_file_id: Mapped[int] = mapped_column(ForeignKey("collection_source_files.id", ondelete="CASCADE"))
    source_name: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # of the quarantined copy
    quarantine_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    converted_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    converted_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    extension: Mapped[str | None] = mapped_column(String(8), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    file_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the subject's id on Zooniverse: from the sha256, so stable
    public_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class CollectionDecision(Base):
    """The audit of a batch's decisions (and a project's data rights): who, when, what, with which note."""

    __tablename__ = "collection_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("collection_projects.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("collection_batches.id", ondelete="CASCADE"), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(32))  # approve, decline, expire, rights, revoke-grant
    by: Mapped[str] = mapped_column(String(250))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CollectionEmail(Base):
    """One e-mail to a project's owner (the outbox): written with the change it tells of, sent and retried by a task."""

    __tablename__ = "collection_emails"
    __table_args__ = (UniqueConstraint("project_id", "batch_id", "event", "job_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("collection_projects.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("collection_batches.id", ondelete="CASCADE"), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the job the event belongs to: a second publication is told again
    event: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(250))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def batch_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params of every collections job: {batch: the batch's id}."""
    batch = params.pop("batch", None)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidRequest("batch must be a collection batch id", field="batch")
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    return {"batch": batch}
