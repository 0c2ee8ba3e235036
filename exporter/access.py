"""Who may do what: API tokens and their roles, which jobs a caller may see, the audit log.

Roles:
- operator: every job, every action.
- service_point: only the private exports of its own service point (and their downloads);
  anyone else's job is "not found".
- read_only: reads every job except private exports; creates and cancels nothing.
- approver: approves or declines collection batches (exporter.collections); sees no jobs.
- owner (not an API token): a collection project's grant token, which its owner holds; it reads
  that project and its batches and revokes itself (exporter.collections.projects.grant_principal).

Tokens are shown once, when created, and stored only as a SHA-256 hash (they are 256-bit
random strings, so a plain hash is enough); the first characters are kept to recognise them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import itsdangerous
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow
from .errors import InvalidRequest, NotFound
from .models import Job
from .roles import ROLES
from .visibility import is_private, job_service_point, pick_artifact

log = logging.getLogger(__name__)

TOKEN_PREFIX = "exp_"
SHOWN_CHARS = 12
LAST_USED_EVERY = timedelta(seconds=60)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    service_point_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role,
            "service_point_id": self.service_point_id,
            "created_at": _iso(self.created_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }


class AuditLog(Base):
    """One row per job creation, download, cancel...: who, what, which job, from where, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(250))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True, index=True)
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(Text, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "tokenId": self.token_id,
            "role": self.role,
            "action": self.action,
            "jobId": self.job_id,
            "target": self.target,
            "ip": self.ip,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: a token's identity and role (or anonymous)."""

    role: str
    token_id: int | None = None
    name: str | None = None
    service_point_id: str | None = None
    project: str | None = None  # a collection project's grant (role "owner"): the one project it reads

    @property
    def actor(self) -> str:
        if self.token_id is None:
            return self.name or "anonymous"
        return f"token:{self.token_id}" + (f" ({self.name})" if self.name else "")

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def can_write(self) -> bool:
        return self.role in ("operator", "service_point")


ANONYMOUS = Principal(role="anonymous")


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(ctx, role: str, service_point_id: str | None = None, name: str | None = None) -> tuple[ApiToken, str]:
    """Make a token; returns the row and the raw token, which is never stored or shown again."""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    service_point_id = (service_point_id or "").strip() or None
    if role == "service_point" and not service_point_id:
        raise InvalidRequest("a service_point token needs --service-point ID", field="service_point")
    if role != "service_point" and service_point_id:
        raise InvalidRequest(f"only service_point tokens belong to a service point, not {role}", field="service_point")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, prefix=raw[:SHOWN_CHARS], token_hash=hash_token(raw), role=role, service_point_id=service_point_id)
    with ctx.db.session() as s:
        s.add(row)
    log.info("api token %s created (%s%s)", row.id, role, f", service point {service_point_id}" if service_point_id else "")
    return row, raw


def list_tokens(ctx, include_revoked: bool = True) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    with ctx.db.session() as s:
        return list(s.scalars(query))


def revoke_token(ctx, token_id: int) -> ApiToken:
    with ctx.db.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"no API token {token_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
    log.info("api token %s revoked", token_id)
    return row


def authenticate(ctx, raw_token: str | None, now: datetime | None = None) -> Principal | None:
    """The principal a raw token stands for, or None when it is unknown or revoked."""
    if not raw_token or not raw_token.startswith(TOKEN_PREFIX) or len(raw_token) > 200:
        return None
    now = now or utcnow()
    with ctx.db.session() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(raw_token))).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
            s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        return Principal(role=row.role, token_id=row.id, name=row.name, service_point_id=row.service_point_id)


def can_see(principal: Principal | None, job: Job) -> bool:
    """Whether the caller may see this job (and download what it made); unseen jobs are a 404."""
    if principal is None:
        return False
    if principal.role == "operator":
        return True
    if principal.role == "service_point":
        return is_private(job) and job_service_point(job) == principal.service_point_id
    if principal.role == "read_only":
        return not is_private(job)
    return False


def audit(
    ctx,
    principal: Principal | None,
    action: str,
    job_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
    session=None,
) -> None:
    """Write one audit row (in `session` when given, so it commits with the change it records)."""
    principal = principal or ANONYMOUS
    row = AuditLog(
        actor=principal.actor[:250], token_id=principal.token_id, role=principal.role, action=action,
        job_id=job_id, target=target, ip=(ip or "")[:64] or None, detail=detail,
    )
    if session is not None:
        session.add(row)
        return
    with ctx.db.session() as s:
        s.add(row)


def list_audit(ctx, job_id: str | None = None, action: str | None = None, token_id: int | None = None, limit: int = 100, offset: int = 0) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.at.desc(), AuditLog.id.desc())
    if job_id:
        query = query.where(AuditLog.job_id == job_id)
    if action:
        query = query.where(AuditLog.action == action)
    if token_id is not None:
        query = query.where(AuditLog.token_id == token_id)
    with ctx.db.session() as s:
        return list(s.scalars(query.limit(limit).offset(offset)))


# Signed download links: expiring URLs to the API's (audited) download endpoint, usable
# without a token, e.g. by whoever receives a webhook.


# itsdangerous's Signer: HMAC-SHA256 under a key derived from SECRET_KEY with a salt of its own (no
# other value the app signs opens a download), compared in constant time. The link keeps its
# readable query (artifact, expires, by); the signature covers them and the job.
LINK_SALT = "exporter.api.download-link"


def _link_signer(secret: str) -> itsdangerous.Signer:
    return itsdangerous.Signer(secret, salt=LINK_SALT, digest_method=hashlib.sha256)


def _link_message(job_id: str, artifact: str, expires: int, token_id: int | None) -> bytes:
    return f"{job_id}\n{artifact}\n{expires}\n{token_id or ''}".encode()


def signed_download_url(ctx, job_id: str, artifact: str, principal: Principal | None = None, expires_in: int | None = None, now: float | None = None) -> str:
    """An expiring link to /api/v1/exports/<id>/download for one artifact of the job."""
    ttl = expires_in or ctx.settings.download_url_ttl
    expires = int((time.time() if now is None else now) + ttl)
    token_id = principal.token_id if principal else None
    query = {"artifact": artifact, "expires": expires}
    if token_id is not None:
        query["by"] = token_id
    query["signature"] = _link_signer(ctx.settings.secret_key).get_signature(_link_message(job_id, artifact, expires, token_id)).decode()
    return f"{ctx.settings.public_url}/api/v1/exports/{job_id}/download?{urlencode(query)}"


ARTIFACT_LINKS = {"dataURI": "data", "manifestURI": "manifest"}


def download_links(ctx, job: Job, principal=None) -> dict[str, str | None]:
    """Signed, expiring links to a succeeded job's data and manifest, as the API and webhooks show them."""
    out: dict[str, str | None] = {}
    for field, which in ARTIFACT_LINKS.items():
        art = pick_artifact(job, which)
        out[field] = signed_download_url(ctx, job.id, art.name, principal) if art and art.deleted_at is None else None
    return out


class LinkInvalid(InvalidRequest):
    pass


class LinkExpired(InvalidRequest):
    pass


def verify_download_link(ctx, job_id: str, artifact: str, expires: str, signature: str, by: str | None, now: float | None = None) -> int | None:
    """Check a signed link; returns the id of the token it was issued to (None: anonymous)."""
    try:
        expires_at = int(expires)
        token_id = int(by) if by else None
    except (TypeError, ValueError):
        raise LinkInvalid("malformed download link", field="signature") from None
    if not _link_signer(ctx.settings.secret_key).verify_signature(_link_message(job_id, artifact, expires_at, token_id), (signature or "").encode("utf-8", "replace")):
        raise LinkInvalid("this download link is not valid (it was changed or is not ours)", field="signature")
    if token_id is not None:
        with ctx.db.session() as s:
            token = s.get(ApiToken, token_id)
            if token is None or token.revoked_at is not None:
                raise LinkInvalid("this download link was issued to a token that has been revoked", field="signature")
    if (time.time() if now is None else now) > expires_at:
        raise LinkExpired("this download link has expired; ask for the job again for a new one", field="expires")
    return token_id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
