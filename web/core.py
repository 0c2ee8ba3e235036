"""Health, signed local downloads, and / (which leads to the operator dashboard in web/pages.py)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, request, send_file, url_for

from exporter import access, jobs
from exporter.collections.publication import PREFIX as COLLECTIONS
from exporter.collections.publication import public_object as collection_object
from exporter.context import Context
from exporter.dumps.layout import ROOT as DUMPS
from exporter.dumps.publish import public_object
from exporter.errors import InvalidRequest
from exporter.health import check_all
from exporter.raids import latest
from exporter.storage.local import LocalStorage
from exporter.storage.signing import BadSignature, Expired, verify

bp = Blueprint("core", __name__)


def ctx() -> Context:
    return current_app.config["EXPORTER"]


def error(status: int, message: str, **extra):
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


@bp.get("/healthz")
def healthz():
    checks = check_all(ctx())
    ok = all(c.ok for c in checks)
    body = {"status": "ok" if ok else "down", "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}
    if not ok:
        body["down"] = [c.name for c in checks if not c.ok]
    return jsonify(body), 200 if ok else 503


@bp.get("/public/<path:key>")
def public_file(key: str):
    """A public export's objects (archive, manifest, sitemaps, HTML index) for anyone, search engines included."""
    if key.startswith(DUMPS):
        return dump_file(key)
    if key.startswith(COLLECTIONS):
        art = collection_object(ctx(), key)
        if art is None:
            return error(404, "no published collection object at this address (a batch is public only once approved and published)")
        return send_public(art, "public, max-age=3600", inline=True)
    art = jobs.public_artifact(ctx(), key)
    if art is None:
        return error(404, "no public object at this address (it may have expired)")
    return send_public(art, "public, max-age=3600")


@bp.get("/public/exports/public/<agency>/latest/<path:name>")
def latest_public_file(agency: str, name: str):
    """A file of the agency's newest full public export, at an address that never changes."""
    art = latest.latest_file(ctx(), agency, name)
    if art is None:
        return error(404, f"agency {agency} has no current full public export with a file {name!r}")
    response = send_public(art, "public, max-age=60")
    response.headers["Content-Location"] = f"{request.script_root}/public/{art.key}"
    return response


@bp.get("/public/exports/public/<agency>/latest.json")
def latest_public_json(agency: str):
    """Which export is the agency's current full public one, and where each of its files is."""
    doc = latest.latest_document(ctx(), agency)
    if doc is None:
        return error(404, f"agency {agency} has no current full public export")
    response = jsonify(doc)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


def send_public(art, cache_control: str, inline: bool = False) -> Response:
    """Stream a public artifact, with its sha256 as ETag (a matching If-None-Match gets 304)."""
    if request.if_none_match.contains(art.sha256):
        return Response(status=304)
    key = art.key
    access.audit(ctx(), None, "download", job_id=art.job_id, target=art.name, ip=request.remote_addr, detail={"key": key, "public": True})
    inline = inline or art.content_type in ("text/html", "application/xml", "application/json", "application/ld+json", "text/plain")
    response = Response(_stream(key), mimetype=art.content_type, direct_passthrough=True)
    response.headers["Content-Length"] = str(art.size)
    response.headers["Cache-Control"] = cache_control
    response.set_etag(art.sha256)
    if not inline:
        response.headers["Content-Disposition"] = f'attachment; filename="{art.filename}"'
    return response


def _stream(key: str):
    """The object's bytes in chunks; opened now, while the request's context is there."""
    body = ctx().storage.open(key)

    def chunks():
        try:
            while chunk := body.read(1024 * 1024):
                yield chunk
        finally:
            body.close()

    return chunks()


def dump_file(key: str):
    """A dump's LATEST.json (revalidated on every read) or an object a kept change set names (immutable)."""
    obj = public_object(ctx(), key)
    if obj is None:
        return error(404, "no dump object at this address (it may have been pruned; start again from LATEST.json)")
    if request.if_none_match.contains(obj.sha256):
        response = Response(status=304)
    else:
        response = Response(obj.body if obj.body is not None else _stream(key), mimetype=obj.content_type, direct_passthrough=obj.body is None)
        response.headers["Content-Length"] = str(obj.size)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if obj.immutable else "no-cache"
    response.set_etag(obj.sha256)
    return response


@bp.get("/files/<path:key>")
def download(key: str):
    storage = ctx().storage
    if not isinstance(storage, LocalStorage):
        abort(404)
    filename = request.args.get("filename", "")
    try:
        verify(ctx().settings.secret_key, key, filename, request.args.get("signature", ""))
    except Expired as exc:
        return error(410, str(exc))
    except BadSignature as exc:
        return error(403, str(exc))
    try:
        path = storage.path(key)
    except InvalidRequest as exc:
        return error(400, str(exc))
    if not path.is_file():
        return error(404, "this file no longer exists (it may have expired)")
    return send_file(path, as_attachment=True, download_name=filename or key.rsplit("/", 1)[-1], conditional=True, max_age=0)


@bp.get("/")
def index():
    """The operator dashboard lives in web/pages.py, behind its login."""
    return redirect(url_for("pages.dashboard"))
