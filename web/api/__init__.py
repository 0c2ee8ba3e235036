"""The JSON API at /api/v1, described by the OpenAPI document at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import archives, errors, exports, service  # noqa: E402,F401  (views register on bp)
from .docs import docs_bp  # noqa: E402
from .service import root_bp  # noqa: E402,F401

bp.register_blueprint(docs_bp)  # /api/v1/docs: a page for people, not an operation of the document
