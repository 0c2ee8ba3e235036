"""The broken-links report per organisation, as a dict (JSON) and as CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from ..context import Context
from ..db import utcnow
from ..models import _iso
from .models import Archival, Portal, Resource
from .portals import get_portal

CSV_COLUMNS = ["organization", "resource_id", "package", "name", "url", "status_id", "status", "reason", "failure_count", "first_failure", "last_success", "checked_at"]
NO_ORG = "(no organisation)"


REPORT_BATCH = 1000


def broken_links(
    ctx: Context, organization: str | None = None, portal: str | None = None, batch: int = REPORT_BATCH, open_only: bool = False,
) -> dict[str, Any]:
    """Per organisation: resource counts (checked, broken, unknown) and one row per broken resource.
    With `open_only`, only resources open to all (Resource.open_to_all: none of a private
    dataset, none its portal stopped listing), for readers who are not operators.

    Rows are streamed from the database `batch` at a time; only counts and broken rows are kept."""
    q = (
        select(Resource, Archival)
        .outerjoin(Archival, Archival.resource_id == Resource.id)
        .where(Resource.gone_at.is_(None))
        .order_by(Resource.organization, Resource.package_name, Resource.url)
    )
    if open_only:
        q = q.where(Resource.open_to_all)
    if organization:
        q = q.where(Resource.organization == organization)
    if portal:
        q = q.join(Portal, Portal.id == Resource.portal_id).where(Portal.id == get_portal(ctx, portal).id)  # NotFound: say so, not an empty report
    orgs: dict[str, dict[str, Any]] = defaultdict(lambda: {"resources": 0, "checked": 0, "broken": 0, "unknown": 0, "rows": []})
    with ctx.db.session() as s:
        for res, arch in s.execute(q.execution_options(yield_per=batch)):
            org = orgs[res.organization or NO_ORG]
            org["resources"] += 1
            if arch is None or arch.status_id is None:
                continue
            org["checked"] += 1
            if arch.is_broken is None:
                org["unknown"] += 1
            if arch.is_broken:
                org["broken"] += 1
                org["rows"].append(
                    {
                        "resource_id": res.id, "package": res.package_name, "name": res.name, "url": res.url,
                        "status_id": arch.status_id, "status": arch.status, "reason": arch.reason,
                        "failure_count": arch.failure_count, "first_failure": _iso(arch.first_failure),
                        "last_success": _iso(arch.last_success), "checked_at": _iso(arch.checked_at),
                    }
                )
    organizations = [{"organization": name, **data} for name, data in sorted(orgs.items())]
    totals = {k: sum(o[k] for o in organizations) for k in ("resources", "checked", "broken", "unknown")}
    return {"generated_at": _iso(utcnow()), "totals": totals, "organizations": organizations}


def broken_links_csv(report: dict[str, Any]) -> str:
    """One CSV line per broken resource (organisation first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for org in report["organizations"]:
        for row in org["rows"]:
            writer.writerow({"organization": org["organization"], **row})
    return out.getvalue()
