"""Signed, expiring URLs for the local storage backend (served by the web app).

The signature is an itsdangerous token (HMAC-SHA1 over a key derived from SECRET_KEY with a
salt of its own, so no other signed value of the app opens a download) carrying the key,
the file name and the expiry. The file name is also in the query, for people to read; the
two must match.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlencode

import itsdangerous

from ..errors import ExporterError

SALT = "exporter.storage.download"


class BadSignature(ExporterError):
    pass


class Expired(ExporterError):
    pass


def _serializer(secret: str) -> itsdangerous.URLSafeSerializer:
    return itsdangerous.URLSafeSerializer(secret, salt=SALT)


def sign(base_url: str, secret: str, key: str, expires_in: int, filename: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + expires_in)
    token = _serializer(secret).dumps({"key": key, "filename": filename, "expires": expires})
    return f"{base_url}/files/{quote(key)}?{urlencode({'filename': filename, 'signature': token})}"


def verify(secret: str, key: str, filename: str, signature: str, now: float | None = None) -> None:
    """Raise BadSignature if anything was changed, Expired if the link is too old."""
    try:
        claims = _serializer(secret).loads(signature or "")
    except itsdangerous.BadData:
        raise BadSignature("this download link is not valid (it was changed or is not ours)") from None
    if not isinstance(claims, dict) or claims.get("key") != key or claims.get("filename") != (filename or ""):
        raise BadSignature("this download link is not valid (it was changed or is not ours)")
    if (time.time() if now is None else now) > claims["expires"]:
        raise Expired("this download link has expired; ask for a new one")
