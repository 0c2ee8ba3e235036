"""Reading request bodies and query strings; every problem is an InvalidRequest naming the field."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from flask import request

from exporter.errors import InvalidRequest


def json_object(allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object with only `allowed` keys (413 comes from Flask before this)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest("the request body must be a JSON object", field="body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}", field=unknown[0])
    return body


def choice(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise InvalidRequest(f"{name} is required: one of {', '.join(choices)}", field=name)
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, got {value!r}", field=name)
    return value


def optional_text(body: dict[str, Any], name: str, max_length: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", field=name)
    if len(value) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters", field=name)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise InvalidRequest(f"{name} must not hold control characters", field=name)
    return value


def identifier(value: Any, field: str) -> str | int:
    """A non-empty string or a non-negative whole number (an agency or service point id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRequest(f"{field} must be a string or a whole number", field=field)
    if isinstance(value, str) and (not value.strip() or len(value) > 200 or any(ord(c) < 32 for c in value)):
        raise InvalidRequest(f"{field} must be a non-empty string of at most 200 printable characters", field=field)
    if isinstance(value, int) and not 0 <= value < 2**63:
        raise InvalidRequest(f"{field} must be between 0 and 2^63-1", field=field)
    return value.strip() if isinstance(value, str) else value


def string_list(body: dict[str, Any], name: str, max_items: int, required: bool = False) -> list[str]:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required: a list of strings", field=name)
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings", field=name)
    if required and not value:
        raise InvalidRequest(f"{name} must not be empty", field=name)
    if len(value) > max_items:
        raise InvalidRequest(f"{name} may hold at most {max_items} items", field=name)
    return value


def http_url(value: str, field: str) -> str:
    """An absolute http(s) URL with a host; finer address rules belong to the kind that fetches it."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise InvalidRequest(f"{field} is not a valid URL: {exc}", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{field} must be an absolute http(s) URL, got {value[:200]!r}", field=field)
    if len(value) > 2048 or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidRequest(f"{field} must be at most 2048 characters without spaces", field=field)
    return value


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, got {raw[:50]!r}", field=name) from None
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, got {raw[:50]!r}", field=name)
    return raw
