"""Object storage: one interface, a local-folder backend and an S3 backend."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..config import Settings
from .base import Hasher, HashingReader, ObjectInfo, ObjectNotFound, PreconditionFailed, Storage, check_key

__all__ = ["Hasher", "HashingReader", "ObjectInfo", "ObjectNotFound", "PreconditionFailed", "Storage", "check_key", "open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The backend STORAGE_URL names."""
    parts = urlsplit(settings.storage_url)
    if parts.scheme == "s3":
        from .s3 import S3Storage

        return S3Storage(parts.netloc, parts.path, settings.s3_endpoint_url, settings.s3_region)
    from .local import LocalStorage

    return LocalStorage(unquote(parts.netloc + parts.path), settings.public_url, settings.secret_key)
