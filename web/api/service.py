"""Storage use, metrics, the audit log and the OpenAPI document."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, current_app, jsonify

from exporter import access
from exporter import metrics as prometheus
from exporter.admission import storage_usage

from . import bp, schemas
from .auth import ctx, public, require
from .spec import document

root_bp = Blueprint("metrics", __name__)


@bp.get("/storage")
@bp.response(200, schemas.Storage, description="Storage use.")
@require()
def get_storage():
    """Free and total bytes of the storage in use (`size` is `total` under MapColonies' name)."""
    usage = storage_usage(ctx())
    return {**asdict(usage), "size": usage.total}


@bp.get("/metrics")
@bp.alt_response(200, schema={"type": "string"}, content_type="text/plain", description="Prometheus text format.", success=True)
@public
def metrics():
    """Prometheus metrics: jobs by kind and status, durations, queue depths, storage (also at /metrics)."""
    return Response(prometheus.render(ctx()), content_type=prometheus.CONTENT_TYPE)


@root_bp.get("/metrics")
def root_metrics():
    """Where Prometheus looks by default."""
    return metrics()


@bp.get("/audit")
@bp.arguments(schemas.AuditQuery, location="query")
@bp.response(200, schemas.AuditList, description="Newest first.")
@require("operator")
def list_audit(query: dict):
    """The audit log: job creations, downloads, cancels (operator)."""
    limit, offset = query["limit"], query["offset"]
    rows = access.list_audit(ctx(), job_id=query.get("jobId"), action=query.get("action"), limit=limit, offset=offset)
    return {"items": rows, "limit": limit, "offset": offset}


@bp.get("/openapi.json")
@bp.alt_response(200, schema={"type": "object"}, description="The OpenAPI document.", success=True)
@public
def openapi():
    """This document."""
    return jsonify(document(current_app, ctx().settings.public_url))
