"""/public/exports/public/<agency>/latest/<file> and latest.json: always the newest succeeded,
unexpired full public export, computed from rows, never a stale, incremental or private object."""

from __future__ import annotations

import subprocess
from datetime import timedelta

from sqlalchemy import update

from exporter import cleanup
from exporter.db import utcnow
from exporter.models import Job
from web import create_app

from .raids_helpers import AGENCY, SP, artifact, record, run_export, save

LATEST = "/public/exports/public/038sjwq14/latest"


def _client(ctx):
    ctx.settings = ctx.settings.replace(export_settle_seconds=0)
    return create_app(ctx).test_client()


def test_latest_serves_the_newest_full_export_and_sha256sum_verifies_it(ctx, tmp_path):
    client = _client(ctx)
    assert client.get(f"{LATEST}/raids.zip").status_code == 404
    assert client.get(f"{LATEST}.json").status_code == 404
    save(ctx, record(1))
    first = run_export(ctx, "export_public", {"agency": AGENCY})
    save(ctx, record(2))
    second = run_export(ctx, "export_public", {"agency": AGENCY})
    run_export(ctx, "export_public", {"agency": AGENCY, "mode": "incremental"})  # newer, but not full
    run_export(ctx, "export_private", {"service_point": SP})

    r = client.get(f"{LATEST}/raids.zip")
    archive = artifact(second, "archive")
    assert r.status_code == 200 and r.data == ctx.storage.read_bytes(archive.key)
    assert r.headers["Content-Location"] == f"/public/{archive.key}" and r.headers["Cache-Control"] == "public, max-age=60"
    assert client.get(f"{LATEST}/raids.zip", headers={"If-None-Match": f'"{archive.sha256}"'}).status_code == 304

    doc = client.get(f"{LATEST}.json").get_json()
    assert doc["job_id"] == second.id and doc["agency"] == "038sjwq14" and doc["counts"]["records"] == 2
    names = {f["name"]: f for f in doc["files"]}
    assert {"raids.zip", "manifest.json", "SHA256SUMS", "ro-crate-metadata.json", "sitemap.xml", "index.html"} <= set(names)
    assert names["raids.zip"]["sha256"] == archive.sha256 and names["raids.zip"]["url"].endswith("/public/" + archive.key)
    assert names["raids.zip"]["latest_url"].endswith(f"{LATEST}/raids.zip")

    folder = tmp_path / "latest"
    folder.mkdir()
    for name in ("raids.zip", "manifest.json", "SHA256SUMS"):
        (folder / name).write_bytes(client.get(f"{LATEST}/{name}").data)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    assert first.id != second.id
    assert client.get(f"{LATEST}/nothing.txt").status_code == 404
    assert client.get("/public/exports/public/038sjwq14/latest/../latest.json").status_code in (404, 308)
    assert client.get("/public/exports/public/02stey378/latest.json").status_code == 404


def test_an_expired_newest_export_gives_way_to_the_one_before(ctx):
    client = _client(ctx)
    save(ctx, record(1))
    first = run_export(ctx, "export_public", {"agency": AGENCY})
    second = run_export(ctx, "export_public", {"agency": AGENCY})
    assert client.get(f"{LATEST}.json").get_json()["job_id"] == second.id
    past = utcnow() - timedelta(seconds=1)
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == second.id).values(expires_at=past))
    assert client.get(f"{LATEST}.json").get_json()["job_id"] == first.id  # past its expiry, before cleanup ran
    cleanup.run(ctx)
    assert client.get(f"{LATEST}/raids.zip").data == ctx.storage.read_bytes(artifact(first, "archive").key)
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == first.id).values(status="failed"))
    assert client.get(f"{LATEST}/raids.zip").status_code == 404
