"""/public/<key> serves a public export's published objects to anyone, and nothing else."""

from __future__ import annotations

import re

from web import create_app

from .raids_helpers import (
    AGENCY,
    artifact,
    future,
    handle,
    record,
    run_export,
    save,
)


def test_public_objects_are_served_and_private_ones_are_not(ctx):
    save(ctx, record(1), record(2, access="embargoed", expiry=future()))
    public = run_export(ctx, "export_public", {"agency": AGENCY})
    private = run_export(ctx, "export_private", {"service_point": 20000000})
    client = create_app(ctx).test_client()

    index_key = artifact(public, "sitemap").key
    r = client.get(f"/public/{index_key}")
    assert r.status_code == 200 and r.mimetype == "application/xml"
    # Every sitemap the index names is reachable at the address it gives.
    for loc in re.findall(r"<loc>([^<]+)</loc>", r.get_data(as_text=True)):
        path = loc.removeprefix(ctx.settings.public_url)
        sub = client.get(path)
        assert sub.status_code == 200 and handle(1) in sub.get_data(as_text=True)

    archive = artifact(public, "archive")
    r = client.get(f"/public/{archive.key}")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    assert client.get(f"/public/{archive.key}", headers={"If-None-Match": f'"{archive.sha256}"'}).status_code == 304

    for art in private.artifacts:
        assert client.get(f"/public/{art.key}").status_code == 404
    assert client.get("/public/exports/public/nothing/here.zip").status_code == 404
