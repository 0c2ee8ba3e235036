"""OAI-PMH 2.0 at /oai (GET and POST, as the protocol requires); the domain writes the response."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from exporter.discovery.oai import respond

bp = Blueprint("oai", __name__)


@bp.route("/oai", methods=["GET", "POST"])
def endpoint():
    ctx = current_app.config["EXPORTER"]
    params = list(request.args.items(multi=True)) + (list(request.form.items(multi=True)) if request.method == "POST" else [])
    body = respond(ctx, params, ctx.settings.public_url.rstrip("/") + "/oai")
    return Response(body, status=200, content_type="text/xml; charset=utf-8")
