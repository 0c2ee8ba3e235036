"""Storage use, metrics, the audit log and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from exporter import access, metrics
from exporter.admission import storage_usage

from . import bp
from .auth import ctx, require
from .openapi import document
from .validation import query_int

root_bp = Blueprint("metrics", __name__)


@bp.get("/storage")
@require()
def storage():
    usage = storage_usage(ctx())
    return jsonify({"free": usage.free, "total": usage.total, "used": usage.used, "reserved": usage.reserved})


@bp.get("/metrics")
def api_metrics():
    return Response(metrics.render(ctx()), content_type=metrics.CONTENT_TYPE)


@root_bp.get("/metrics")
def root_metrics():
    """Where Prometheus looks by default."""
    return api_metrics()


@bp.get("/audit")
@require("operator")
def audit_log():
    from flask import request

    limit = query_int("limit", 100, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    rows = access.list_audit(ctx(), job_id=request.args.get("jobId") or None, action=request.args.get("action") or None, limit=limit, offset=offset)
    return jsonify({"items": [r.to_dict() for r in rows], "limit": limit, "offset": offset})


@bp.get("/openapi.json")
def openapi():
    return jsonify(document(ctx().settings.public_url))
