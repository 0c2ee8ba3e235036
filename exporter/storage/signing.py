"""Signed, expiring URLs for the local storage backend (served by the web app)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

from ..crypto import same
from ..errors import ExporterError


class BadSignature(ExporterError):
    pass


class Expired(ExporterError):
    pass


def _mac(secret: str, key: str, expires: int, filename: str) -> str:
    msg = f"{key}\n{expires}\n{filename}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sign(base_url: str, secret: str, key: str, expires_in: int, filename: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + expires_in)
    query = urlencode({"expires": expires, "filename": filename, "signature": _mac(secret, key, expires, filename)})
    return f"{base_url}/files/{quote(key)}?{query}"


def verify(secret: str, key: str, expires: str, filename: str, signature: str, now: float | None = None) -> None:
    """Raise BadSignature if anything was changed, Expired if the link is too old."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        raise BadSignature("malformed link: expires is not a number") from None
    expected = _mac(secret, key, expires_at, filename or "")
    if not same(expected, signature):
        raise BadSignature("this download link is not valid (it was changed or is not ours)")
    if (time.time() if now is None else now) > expires_at:
        raise Expired("this download link has expired; ask for a new one")
