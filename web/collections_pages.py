"""The approvers' pages of the collections family: projects, a batch with its thumbnails, counts,
refusals and overlap, and the approve and decline forms (CSRF-checked). Operators and approver
tokens log in at /pages/login; the thumbnails are quarantined images, served only to them."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user

from exporter import access
from exporter.collections import batches, projects, views
from exporter.context import Context
from exporter.errors import InvalidRequest, NotFound

from .pages import check_csrf

bp = Blueprint("collections_pages", __name__, url_prefix="/pages/collections")
ROLES = ("operator", "approver")


def ctx() -> Context:
    return current_app.config["EXPORTER"]


bp.before_request(check_csrf)


def approver_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        principal = getattr(current_user, "principal", None)
        if principal is None or principal.role not in ROLES:
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        g.approver = principal
        g.operator = principal if principal.role == "operator" else None
        return view(*args, **kwargs)

    return wrapper


@bp.get("/", endpoint="projects")
@approver_required
def projects_page():
    rows = [projects.project_view(p) for p in projects.list_projects(ctx())]
    waiting = views.list_batches(ctx(), state="awaiting_approval")
    recent = views.list_batches(ctx(), limit=50)
    return render_template("pages/collections.html", projects=rows, waiting=waiting, recent=recent, approver=g.approver)


@bp.get("/batches/<int:batch_id>")
@approver_required
def batch_page(batch_id: int):
    return render_template("pages/collection_batch.html", batch=_view_or_404(batch_id), approver=g.approver, done=request.args.get("done"), error=request.args.get("error"))


@bp.get("/files/<int:file_id>/image")
@approver_required
def quarantined_image(file_id: int):
    """A converted image still in quarantine, for the approver's eyes only (never cached by anyone else)."""
    found = views.quarantined_image(ctx(), file_id)
    if found is None:
        abort(404)
    key, content_type = found
    response = Response(ctx().storage.read_bytes(key), mimetype=content_type)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _decide(batch_id: int, action: str):
    principal = g.approver
    form = request.form
    try:
        if action == "approve":
            b = batches.approve(ctx(), batch_id, principal.actor, form.get("note", ""))
        else:
            b = batches.decline(ctx(), batch_id, principal.actor, form.get("reason", ""))
    except (InvalidRequest, NotFound) as exc:
        return render_template("pages/collection_batch.html", batch=_view_or_404(batch_id), approver=principal, done=None, error=str(exc)), 400
    access.audit(ctx(), principal, f"collections.{action}", target=f"batch={b.id}", ip=request.remote_addr, detail={"page": True})
    return redirect(url_for("collections_pages.batch_page", batch_id=batch_id, done=f"{action}d"))


def _view_or_404(batch_id: int) -> dict:
    try:
        return views.get_batch(ctx(), batch_id)
    except NotFound:
        abort(404)


@bp.post("/batches/<int:batch_id>/approve")
@approver_required
def approve(batch_id: int):
    return _decide(batch_id, "approve")


@bp.post("/batches/<int:batch_id>/decline")
@approver_required
def decline(batch_id: int):
    return _decide(batch_id, "decline")
