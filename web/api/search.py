"""Public search over raids (no token): the public view only, as on /search."""

from __future__ import annotations

from exporter.discovery.search import search

from . import bp, schemas
from .auth import ctx, public


@bp.get("/search")
@bp.arguments(schemas.SearchQuery, location="query")
@bp.response(200, schemas.SearchResults, description="A page of matching raids, with facet counts.")
@public
def search_raids(query: dict):
    """Search public raids: free text over open raids' titles, descriptions, contributors,
    organisations and subjects (closed ones only by handle and dates), filtered by agency,
    service point, access type and start date, sorted by relevance or date."""
    return search(
        ctx(), query.get("q"), agency=query.get("agency"), access_type=query.get("accessType"), start_from=query.get("from_"),
        start_until=query.get("until"), page=query["page"], per_page=query["perPage"], sort=query["sort"], service_point=query.get("servicePoint"),
    ).to_dict()
