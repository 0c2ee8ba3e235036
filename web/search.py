"""The public search page (no login): a search box, the results and their facet counts."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from exporter.discovery.search import search
from exporter.errors import InvalidRequest

bp = Blueprint("search", __name__)

ARGS = ("q", "agency", "servicePoint", "accessType", "from", "until", "sort")


@bp.get("/search")
def page():
    ctx = current_app.config["EXPORTER"]
    given = {k: request.args[k] for k in ARGS if request.args.get(k)}
    try:
        results = search(
            ctx,
            q=given.get("q"),
            agency=given.get("agency"),
            service_point=given.get("servicePoint"),
            access_type=given.get("accessType"),
            start_from=given.get("from"),
            start_until=given.get("until"),
            page=request.args.get("page", 1),
            sort=given.get("sort", "relevance"),
        )
        error = None
    except InvalidRequest as exc:
        results, error = None, (str(exc), exc.field)

    def link(**changes) -> str:
        args = {k: v for k, v in {**given, **changes}.items() if v not in (None, "")}
        return url_for("search.page", **args)

    return render_template("search/index.html", results=results, error=error, given=given, link=link), 400 if error else 200
