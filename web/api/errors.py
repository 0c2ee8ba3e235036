"""Every error under /api/v1 is JSON: {"error": message, "field": name or null}."""

from __future__ import annotations

import logging

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from exporter.admission import InsufficientStorage
from exporter.errors import InvalidRequest, NotFound

from . import bp

log = logging.getLogger(__name__)

PREFIX = bp.url_prefix


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
    404: "no such endpoint in the API, or an id that is not 1-64 letters, digits, '-' and '_' (see /api/v1/openapi.json)",
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
    """The body limit of the settings in force (413 when a body is read past it)."""
    from flask import current_app

    request.max_content_length = current_app.config["EXPORTER"].settings.api_max_body_bytes
