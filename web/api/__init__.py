"""The JSON API at /api/v1: views in the area modules, their requests and answers in
`schemas.py`, and the OpenAPI document at /api/v1/openapi.json generated from both (`spec.py`)."""

from __future__ import annotations

from flask import Blueprint

from .spec import ApiBlueprint

bp = ApiBlueprint("api", __name__, url_prefix="/api/v1")

from . import archives, collections, errors, exports, publications, search, service, tiles  # noqa: E402,F401  (views register on bp)
from .docs import docs_bp  # noqa: E402
from .service import root_bp  # noqa: E402,F401

# /api/v1/docs: a page for people, not an operation of the document (so Flask's own nesting).
Blueprint.register_blueprint(bp, docs_bp)
