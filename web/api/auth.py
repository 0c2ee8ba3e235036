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
from .spec import BEARER

UNSET = object()


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
        principal = access.authenticate(ctx(), raw) if raw else None
        if principal is None:
            raise ApiError(401, "this API token is not valid (unknown, malformed or revoked)", "Authorization", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.api_principal = principal
    return principal


def require(*roles: str) -> Callable:
    """The view needs a valid token, and one of `roles` when given (else a 403 naming them).
    Place it below query `@bp.arguments` and above body ones: as on every endpoint, the query
    string is checked first; the token is checked before the body is read."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal is None:
                raise ApiError(401, "this endpoint needs an API token: send 'Authorization: Bearer <token>'", "Authorization", {"WWW-Authenticate": "Bearer"})
            if roles and principal.role not in roles:
                raise ApiError(403, f"a {principal.role} token may not do this; it needs a {' or '.join(roles)} token", "Authorization")
            return view(*args, **kwargs)

        return bp.fails(401, 403)(wrapper) if roles else bp.fails(401)(wrapper)

    return decorate


def token_optional(view: Callable) -> Callable:
    """Documents a view that serves anyone but reads a token when one is sent (a bad one is a 401)."""
    return bp.doc(security=[{}, BEARER])(bp.fails(401)(view))


def public(view: Callable) -> Callable:
    """Documents a view that reads no token."""
    return bp.doc(security=[])(view)


def client_ip() -> str | None:
    return request.remote_addr
