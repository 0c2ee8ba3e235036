"""Projects: who owns a collection, where Exporter reads it, the grant that lets it, and the data-rights flag.

The grant is a token made when the project is added and shown once (only its sha256 is kept);
the owner holds it. It is scoped to the source it was made for: a project whose source no longer
equals the grant's scope, or whose grant was revoked, is read no more (polls and running batches
stop at the next file). With it as a bearer token the owner reads the project and its batches
over the API and revokes it (`grant_principal`: a Principal of role "owner" for that one
project); revoking is the owner's way to take Exporter's access back, and the owner is told by
e-mail. A new grant needs a new `exporter collections grant NAME`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..access import Principal
from ..context import Context
from ..crypto import same
from ..db import utcnow
from ..errors import InvalidRequest
from .models import ACTIVE, PROJECT_STATES, CollectionDecision, CollectionProject
from .sources import normalize_source
from .views import get_project

GRANT_PREFIX = "cg_"
OWNER = "owner"  # the role of a grant's holder (exporter.access.Principal)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+$")
ID_RE = re.compile(r"^[0-9]{1,18}$")


class GrantError(InvalidRequest):
    """The project has no valid grant for its source: Exporter may not read it."""


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name.strip()):
        raise InvalidRequest("project name must be 1-63 lower-case letters, digits and '-', starting with a letter or digit", field="name")
    return name.strip()


def check_email(email: Any, field: str = "owner") -> str:
    if not isinstance(email, str) or len(email) > 320 or not EMAIL_RE.match(email.strip()):
        raise InvalidRequest(f"{email!r} is not an e-mail address", field=field)
    return email.strip()


def check_zooniverse_id(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    value = str(value).strip()
    if not ID_RE.match(value):
        raise InvalidRequest(f"{field} must be a Zooniverse id (digits), got {value!r}", field=field)
    return value


def add_project(
    ctx: Context, name: str, source: str, owner_email: str, owner_name: str | None = None, zooniverse_project: str | None = None,
    subject_set: str | None = None, callback_url: str | None = None,
) -> tuple[CollectionProject, str]:
    """Add a project; returns it and its grant token (shown once, never stored)."""
    from ..webhooks import validate_callback_url

    name = check_name(name)
    email = check_email(owner_email)
    source = normalize_source(ctx.settings, source)
    project_id = check_zooniverse_id(zooniverse_project, "zooniverseProject")
    set_id = check_zooniverse_id(subject_set, "subjectSet")
    if set_id and not project_id:
        raise InvalidRequest("a subject set belongs to a Zooniverse project: give the project too", field="zooniverseProject")
    url = None
    if callback_url:
        try:
            url = validate_callback_url(ctx, callback_url)
        except InvalidRequest as exc:
            raise InvalidRequest(str(exc), field="callbackURL") from None
    raw = GRANT_PREFIX + secrets.token_urlsafe(32)
    row = CollectionProject(
        name=name, owner_email=email, owner_name=(owner_name or "").strip()[:200] or None, zooniverse_project_id=project_id, subject_set_id=set_id, source=source,
        callback_url=url, grant_hash=_hash(raw), grant_prefix=raw[:10], grant_scope=source, data_rights_approved=False, status=ACTIVE, last_poll_found=0,
    )
    try:
        with ctx.db.session() as s:
            if s.scalars(select(CollectionProject.id).where(CollectionProject.name == name)).first() is not None:
                raise InvalidRequest(f"a collection project named {name!r} exists already", field="name")
            s.add(row)
    except IntegrityError:
        raise InvalidRequest(f"a collection project named {name!r} exists already", field="name") from None
    return row, raw


def list_projects(ctx: Context) -> list[CollectionProject]:
    with ctx.db.session() as s:
        return list(s.scalars(select(CollectionProject).order_by(CollectionProject.name)))


def project(ctx: Context, name: str) -> CollectionProject:
    with ctx.db.session() as s:
        return get_project(s, name)


def has_grant(p: CollectionProject) -> bool:
    return bool(p.grant_hash) and p.grant_revoked_at is None and p.grant_scope == p.source


def require_grant(p: CollectionProject) -> None:
    if not p.grant_hash or p.grant_revoked_at is not None:
        raise GrantError(f"project {p.name}: its owner's grant to read {p.source} was revoked; nothing is read until a new grant is made", field="grant")
    if p.grant_scope != p.source:
        raise GrantError(f"project {p.name}: the grant is for {p.grant_scope}, not {p.source}", field="grant")


def check_grant(ctx: Context, name: str, raw: str) -> bool:
    """Whether `raw` is the project's live grant token (for the owner to prove it)."""
    principal = grant_principal(ctx, raw)
    return principal is not None and principal.project == check_name(name)


def grant_principal(ctx: Context, raw: str | None) -> Principal | None:
    """The owner behind a live grant token (role "owner", the project's name), or None when it is unknown, revoked or out of scope."""
    if not raw or not raw.startswith(GRANT_PREFIX) or len(raw) > 200:
        return None
    with ctx.db.session() as s:
        p = s.scalars(select(CollectionProject).where(CollectionProject.grant_hash == _hash(raw))).first()
        if p is None or not has_grant(p) or not same(p.grant_hash, _hash(raw)):
            return None
        return Principal(role=OWNER, name=f"owner of {p.name} ({p.grant_prefix}...)", project=p.name)


def new_grant(ctx: Context, name: str, by: str) -> str:
    """Replace the project's grant with a new one for its source (the owner gave access again); returns the token."""
    raw = GRANT_PREFIX + secrets.token_urlsafe(32)
    with ctx.db.session() as s:
        p = get_project(s, name)
        p.grant_hash, p.grant_prefix, p.grant_scope, p.grant_revoked_at = _hash(raw), raw[:10], p.source, None
        s.add(CollectionDecision(project_id=p.id, action="grant", by=by[:250], note=f"grant for {p.source}"))
    return raw


def revoke_grant(ctx: Context, name: str, by: str) -> CollectionProject:
    """Revoke the project's grant: no poll reads its source again, a running batch stops at its next file, the owner is told."""
    from .notify import tell_owner

    after = None
    with ctx.db.session() as s:
        p = get_project(s, name)
        now = utcnow()
        if s.execute(update(CollectionProject).where(CollectionProject.id == p.id, CollectionProject.grant_revoked_at.is_(None)).values(grant_revoked_at=now)
                     .execution_options(synchronize_session=False)).rowcount == 1:  # revoked once, told once, whoever else revokes it at the same time
            p.grant_revoked_at = now
            s.add(CollectionDecision(project_id=p.id, action="revoke-grant", by=by[:250]))
            after = tell_owner(ctx, s, p, "grant-revoked", by=by)
        s.flush()
        s.refresh(p)
    if after is not None:
        after()
    return p


def set_data_rights(ctx: Context, name: str, approved: bool, by: str, note: str | None = None) -> CollectionProject:
    """Record whether the project's data rights are approved (batches up to COLLECTIONS_CAP, else COLLECTIONS_CAP_UNAPPROVED)."""
    with ctx.db.session() as s:
        p = get_project(s, name)
        p.data_rights_approved = approved
        s.add(CollectionDecision(project_id=p.id, action="rights-approved" if approved else "rights-withdrawn", by=by[:250], note=note))
        s.flush()
        return p


def set_status(ctx: Context, name: str, status: str, by: str) -> CollectionProject:
    if status not in PROJECT_STATES:
        raise InvalidRequest(f"status must be one of {', '.join(PROJECT_STATES)}", field="status")
    with ctx.db.session() as s:
        p = get_project(s, name)
        p.status = status
        s.add(CollectionDecision(project_id=p.id, action=f"status-{status}", by=by[:250]))
        s.flush()
        return p


MANIFEST_ROWS = 10_000  # Zooniverse imports at most this many rows from one manifest (SUBJECT_SET_IMPORT_MANIFEST_ROW_LIMIT)


def cap_of(ctx: Context, p: CollectionProject) -> int:
    """The most files one batch of the project holds: COLLECTIONS_CAP_UNAPPROVED until its data rights are approved."""
    cap = min(ctx.settings.collections_cap, MANIFEST_ROWS)
    return cap if p.data_rights_approved else min(ctx.settings.collections_cap_unapproved, cap)


def project_view(p: CollectionProject) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "owner": {"name": p.owner_name, "email": p.owner_email},
        "source": p.source,
        "zooniverseProject": p.zooniverse_project_id,
        "subjectSet": p.subject_set_id,
        "callbackURL": p.callback_url,
        "dataRightsApproved": bool(p.data_rights_approved),
        "status": p.status,
        "grant": {"prefix": p.grant_prefix, "valid": has_grant(p), "revokedAt": _iso(p.grant_revoked_at)},
        "lastPolledAt": _iso(p.last_polled_at),
        "lastPollError": p.last_poll_error,
        "createdAt": _iso(p.created_at),
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
