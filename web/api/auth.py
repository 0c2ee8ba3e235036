"""Who is calling: the bearer token on the request, resolved once, and role checks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request

from exporter import access
from exporter.access import Principal
from exporter.context import Context

from . import bp
from .errors import ApiError
from .spec import BEARER, GRANT

UNSET = object()

# Bearer tokens that are not API tokens, by prefix -> fn(ctx, raw) giving the caller (or None: not
# valid); registered by the area that issues them (a collection project's grant, held by its owner).
# Only views whose `require` names the grant's role take one; anywhere else a valid one is a 403.
GRANTS: dict[str, Callable[[Context, str], Principal | None]] = {}


def ctx() -> Context:
    return current_app.config["EXPORTER"]


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def current_principal() -> Principal | None:
    """The caller, or None when no token was sent; a token sent but not valid is a 401."""
    cached = g.get("api_principal", UNSET)
    if cached is not UNSET:
        return cached
    principal = None
    if request.headers.get("Authorization"):
        raw = bearer()
        grant = next((resolve for prefix, resolve in GRANTS.items() if raw and raw.startswith(prefix)), None)
        principal = (grant or access.authenticate)(ctx(), raw) if raw else None
        if principal is None:
            raise ApiError(401, "this API token is not valid (unknown, malformed or revoked)", "Authorization", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if grant is not None and principal.role not in g.get("api_grant_roles", ()):
            raise ApiError(403, f"a grant token reads only its own project ({principal.project}) and its batches, and revokes itself; this needs an API token", "Authorization")
    g.api_principal = principal
    return principal


def require(*roles: str, grant: str | None = None) -> Callable:
    """The view needs a valid token, and one of `roles` when given (else a 403 naming them).
    `grant`: the view also takes a grant token (GRANTS) whose role this is, documented as
    `grantToken`; the view itself keeps such a caller to its `project` (anything else a 404).
    Place it below query `@bp.arguments` and above body ones: as on every endpoint, the query
    string is checked first; the token is checked before the body is read."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if grant:
                g.api_grant_roles = (grant,)
            principal = current_principal()
            if principal is None:
                raise ApiError(401, "this endpoint needs an API token: send 'Authorization: Bearer <token>'", "Authorization", {"WWW-Authenticate": "Bearer"})
            if roles and principal.role not in (*roles, grant):
                raise ApiError(403, f"a {principal.role} token may not do this; it needs a {' or '.join(roles)} token", "Authorization")
            return view(*args, **kwargs)

        documented = bp.fails(401, 403)(wrapper) if roles else bp.fails(401)(wrapper)
        return bp.doc(security=[BEARER, GRANT])(documented) if grant else documented

    return decorate


def token_optional(view: Callable) -> Callable:
    """Documents a view that serves anyone but reads a token when one is sent (a bad one is a 401)."""
    return bp.doc(security=[{}, BEARER])(bp.fails(401)(view))


def public(view: Callable) -> Callable:
    """Documents a view that reads no token."""
    return bp.doc(security=[])(view)


def client_ip() -> str | None:
    return request.remote_addr
