"""Every error under /api/v1 is JSON: {"error": message, "field": name or null}."""

from __future__ import annotations

import functools
import logging
import re

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from exporter.admission import InsufficientStorage
from exporter.errors import InvalidRequest, NotFound

from . import bp

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def error_response(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
    response = jsonify({"error": message, "field": field})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.message, exc.field, exc.headers)


@bp.errorhandler(InvalidRequest)
def _invalid(exc: InvalidRequest):
    return error_response(400, str(exc), exc.field)


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    return error_response(404, str(exc))


@bp.errorhandler(InsufficientStorage)
def _no_room(exc: InsufficientStorage):
    return error_response(507, str(exc), "scope")


MESSAGES = {
    400: "the request is malformed",
    404: "no such endpoint in the API (see /api/v1/openapi.json)",
    405: "this endpoint does not accept that method (see /api/v1/openapi.json)",
    413: "the request body is too large",
}


def _http_error(exc: HTTPException):
    """Routing and Werkzeug errors (404, 405, 413...) as JSON under /api/v1; elsewhere as they were."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return exc
    status = exc.code or 500
    message = MESSAGES.get(status) or exc.description or exc.name
    if status == 413:
        limit = request.max_content_length
        message = f"the request body is too large: at most {limit} bytes are accepted" if limit else message
    headers = {k: v for k, v in exc.get_headers() if k in ("Allow", "Retry-After")}
    return error_response(status, message, "body" if status == 413 else None, headers)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal error; it was logged")


@bp.record_once
def _install(state) -> None:
    # Routing errors (no such URL, wrong method) never reach a blueprint's own handlers.
    state.app.register_error_handler(HTTPException, _http_error)


@bp.before_request
def _limits() -> None:
    from flask import current_app

    request.max_content_length = current_app.config["EXPORTER"].settings.api_max_body_bytes
    if request.blueprint == "api.docs":
        return
    for name, value in request.args.items(multi=True):
        if "\x00" in value or len(value) > 4096:
            raise InvalidRequest(f"query parameter {name[:50]!r} holds a NUL character or is too long", field=name[:50])
    known = _query_parameters(request.url_rule.rule if request.url_rule else "", request.method)
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidRequest(f"unknown query parameter {unknown[0][:50]!r}; this endpoint takes: {listed}", field=unknown[0][:50])
    for name, values in request.args.lists():
        for value in values:
            _check_query_value(name, value, known[name])
    for name, value in (request.view_args or {}).items():
        if not ID.fullmatch(str(value)):
            raise ApiError(404, f"no such {name}: ids are letters, digits, '-' and '_'")


@functools.cache
def _query_parameters(rule: str, method: str) -> dict[str, dict]:
    """The query parameters (name -> schema) the OpenAPI document gives this route, so the two cannot drift."""
    from .openapi import document

    path = re.sub(r"<[^>]+>", "{}", rule.removeprefix(PREFIX))
    paths = {re.sub(r"\{[^}]+\}", "{}", p): ops for p, ops in document()["paths"].items()}
    ops = paths.get(path, {})
    op = ops.get(method.lower()) or (ops.get("get") if method == "HEAD" else None) or {}
    return {p["name"]: p.get("schema", {}) for p in op.get("parameters", []) if p["in"] == "query"}


def _check_query_value(name: str, value: str, schema: dict) -> None:
    """A query value against its documented schema: type, bounds, length, choices."""
    if schema.get("type") == "integer":
        try:
            number = int(value)
        except ValueError:
            raise InvalidRequest(f"{name} must be a whole number, got {value[:50]!r}", field=name) from None
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and number < low) or (high is not None and number > high):
            raise InvalidRequest(f"{name} must be between {low if low is not None else '-inf'} and {high if high is not None else 'inf'}", field=name)
        return
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidRequest(f"{name} must be one of {', '.join(schema['enum'])}, got {value[:50]!r}", field=name)
    if len(value) > schema.get("maxLength", 4096):
        raise InvalidRequest(f"{name} must be at most {schema.get('maxLength', 4096)} characters", field=name)
