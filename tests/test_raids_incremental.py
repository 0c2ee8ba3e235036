"""Incremental exports: exactly the changes since the last successful export of the scope."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from exporter.db import utcnow
from exporter.models import Job
from exporter.raids import registry
from tests.raids_helpers import SP, SP2, archive_members, artifact, exported, future, handle, jsonl, past, record, run_export, save


@pytest.fixture
def rctx(ctx):
    ctx.settings = ctx.settings.replace(export_page_size=3, export_settle_seconds=0)
    return ctx


def manifest(ctx, job) -> dict:
    return json.loads(ctx.storage.read_bytes(artifact(job, "manifest").key))


def tombstones(ctx, job) -> list[str]:
    return [t["identifier"]["id"] for t in jsonl(archive_members(ctx, job).get("tombstones.jsonl", b""))]


def test_incremental_exports_exactly_the_delta_with_ties_and_tombstones(rctx):
    save(rctx, *[record(n, access="open" if n != 4 else "embargoed", expiry=future()) for n in range(1, 7)])
    save(rctx, record(9, access="embargoed", expiry=past(5), secret="NINE"))
    first = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"})
    assert (first.result["mode"], first.result["requested_mode"], first.result["follows"]) == ("full", "incremental", None)
    assert len(exported(rctx, first)) == 7
    # pretend the first export ran ten days ago: raid 9's embargo ended since then
    with rctx.db.session() as s:
        job = s.get(Job, first.id)
        job.result = dict(job.result, as_of=(utcnow() - timedelta(days=10)).isoformat())
    tie = utcnow()
    with rctx.db.session() as s:
        for n in (5, 1, 2, 6):  # four changes with one updated_at: they straddle a page of 3
            registry.save_raid(s, record(n, title=f"changed {n}"), now=tie)
        registry.delete_raid(s, handle(3))
        registry.save_raid(s, record(7, access="open"))
        registry.save_raid(s, record(8, access="embargoed", expiry=future(), secret="EIGHT"))
    second = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"})
    raids = exported(rctx, second)
    assert list(raids) == [handle(n) for n in (1, 2, 5, 6, 7, 8, 9)]  # changes by (updated_at, id), then the expired embargo
    assert raids[handle(1)]["title"][0]["text"] == "changed 1"
    assert set(raids[handle(8)]) == {"identifier", "metadata", "access"}
    assert raids[handle(9)]["description"][0]["text"] == "Description NINE"  # its embargo ended: now in full
    assert tombstones(rctx, second) == [handle(3)]
    m = manifest(rctx, second)
    assert m["mode"] == "incremental" and m["follows"]["job_id"] == first.id
    assert m["counts"]["records"] == 7 and m["counts"]["tombstones"] == 1
    assert [x["name"] for x in m["members"]] == ["raids.jsonl", "tombstones.jsonl", "README.md", "ro-crate-metadata.json"]
    with rctx.db.session() as s:
        eight = registry.get_raid(s, handle(8))
    # The watermark (raid 8 is embargoed) stays in the job's result; the manifest has only the window.
    assert second.result["watermark"] == {"updated_at": eight.updated_at.isoformat().replace("+00:00", "Z"), "id": eight.id}
    assert "watermark" not in m and "watermark" not in m["follows"]
    assert m["window"] == {"changes_after": first.result["cutoff"], "changes_up_to": second.result["cutoff"]}

    third = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"})
    assert exported(rctx, third) == {} and tombstones(rctx, third) == []
    assert third.result["follows"] == second.id and third.result["watermark"] == second.result["watermark"]

    save(rctx, record(4, access="open"))
    fourth = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"})
    assert list(exported(rctx, fourth)) == [handle(4)] and tombstones(rctx, fourth) == []

    full = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "full"})
    assert list(exported(rctx, full)) == [handle(n) for n in (1, 2, 4, 5, 6, 9, 7, 8)]  # by id
    assert "tombstones.jsonl" not in archive_members(rctx, full)
    assert run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"}).result["follows"] == full.id


def test_private_incremental_is_scoped_to_the_service_point(rctx):
    save(rctx, record(1, sp=SP), record(2, sp=SP2), record(3, sp=SP, access="embargoed", expiry=future(), secret="CLOSED"))
    run_export(rctx, "export_private", {"service_point": SP})
    run_export(rctx, "export_public", {"agency": "038sjwq14"})  # another scope's export does not move this one
    with rctx.db.session() as s:
        registry.update_raid(s, handle(3), {"date": {"startDate": "2022-02-02"}})
        registry.update_raid(s, handle(2), {"date": {"startDate": "2022-02-02"}})
        registry.delete_raid(s, handle(1))
    delta = run_export(rctx, "export_private", {"service_point": SP, "mode": "incremental"})
    raids = exported(rctx, delta)
    assert list(raids) == [handle(3)] and raids[handle(3)]["description"][0]["text"] == "Description CLOSED"
    assert tombstones(rctx, delta) == [handle(1)]


def test_changes_younger_than_the_settle_time_wait_for_the_next_export(rctx):
    save(rctx, record(1), record(2))
    base = run_export(rctx, "export_public", {"agency": "038sjwq14", "sitemaps": False})
    save(rctx, record(2, title="fresh"))
    rctx.settings = rctx.settings.replace(export_settle_seconds=3600)
    waiting = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental", "sitemaps": False})
    assert exported(rctx, waiting) == {} and waiting.result["watermark"] == base.result["watermark"]
    rctx.settings = rctx.settings.replace(export_settle_seconds=0)
    later = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental", "sitemaps": False})
    assert list(exported(rctx, later)) == [handle(2)]


def test_raw_sql_changes_are_not_missed(rctx):
    save(rctx, record(1), record(2))
    run_export(rctx, "export_public", {"agency": "038sjwq14", "sitemaps": False})
    from exporter.raids.models import Raid

    with rctx.db.session() as s:
        s.execute(update(Raid).where(Raid.handle == handle(1)).values(title="bulk"))
    later = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental", "sitemaps": False})
    assert list(exported(rctx, later)) == [handle(1)]


@pytest.mark.parametrize("newest", ["embargoed", "deleted"])
def test_public_manifest_names_no_internal_id_or_private_raids_time(rctx, newest):
    """The newest change is a closed or deleted raid: neither its id nor its change time is published."""
    save(rctx, record(1), record(2))
    first = run_export(rctx, "export_public", {"agency": "038sjwq14", "sitemaps": False})
    with rctx.db.session() as s:
        if newest == "embargoed":
            registry.save_raid(s, record(3, access="embargoed", expiry=future(), secret="HIDDEN"))
        else:
            registry.delete_raid(s, handle(2))
    delta = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental", "sitemaps": False})
    with rctx.db.session() as s:
        raid = registry.get_raid(s, handle(3 if newest == "embargoed" else 2), include_deleted=True)
    secret_time = raid.updated_at.isoformat().replace("+00:00", "Z")
    assert delta.result["watermark"] == {"updated_at": secret_time, "id": raid.id}  # kept internally to resume
    outer = rctx.storage.read_bytes(artifact(delta, "manifest").key).decode()
    inner = archive_members(rctx, delta)["manifest.json"].decode()
    readme = archive_members(rctx, delta)["README.md"].decode()
    for published in (outer, inner, readme):
        assert "watermark" not in published and secret_time not in published
        assert f'"id": {raid.id}' not in published and f'"id":{raid.id}' not in published
    m = json.loads(outer)
    assert m["window"] == {"changes_after": first.result["cutoff"], "changes_up_to": delta.result["cutoff"]}
    # Resuming still works: the next incremental starts after the (internal) watermark.
    with rctx.db.session() as s:
        registry.save_raid(s, record(1, title="later"))
    after = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental", "sitemaps": False})
    assert list(exported(rctx, after)) == [handle(1)] and tombstones(rctx, after) == []
