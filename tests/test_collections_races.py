"""Deciding a batch twice at once over HTTP (a real threaded server, both databases): three approvals
and a decline sent together make exactly one decision, one audit row and at most one publication;
the others are a 400 naming the batch. A poll while the batch publishes makes a new batch of the new
files only, and the publication holds only the approved batch's images."""

from __future__ import annotations

import csv
import io
import threading

import requests
from sqlalchemy import func, select

from exporter import access
from exporter.collections import batches, projects, views
from exporter.collections.models import CollectionDecision
from exporter.models import Job

from .collections_helpers import LiveApp, make_fits, make_small_png, run_sent


def test_approvals_and_a_decline_at_once_make_one_decision(ctx, tmp_path):
    app = LiveApp(ctx)
    roots = tmp_path / "sources"
    folder = roots / "zoo"
    folder.mkdir(parents=True)
    ctx.settings = ctx.settings.replace(public_url=app.url, collections_source_roots=str(roots), collections_settle_seconds=0)
    ctx.__dict__.pop("storage", None)
    app.start()
    try:
        make_fits(folder / "m51.fits", obj="M51")
        make_small_png(folder / "a.png", 1)
        projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
        polled = batches.poll_project(ctx, "zoo")
        run_sent(ctx)
        _, token = access.create_token(ctx, "approver", name="alice")
        calls = [("approve", {"note": "ok"})] * 3 + [("decline", {"reason": "no"})]
        barrier = threading.Barrier(len(calls))
        answers: list[tuple[str, int, dict]] = []

        def decide(action, body):
            barrier.wait(30)
            r = requests.post(f"{app.url}/api/v1/collections/batches/{polled.batch_id}/{action}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            answers.append((action, r.status_code, r.json()))

        threads = [threading.Thread(target=decide, args=c) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert sorted(code for _, code, _ in answers) == [200, 400, 400, 400], answers
        [(winner, _, view)] = [a for a in answers if a[1] == 200]
        assert all(body["field"] == "batch" and "Traceback" not in body["error"] for _, code, body in answers if code == 400), answers
        with ctx.db.session() as s:
            assert s.scalar(select(func.count()).select_from(CollectionDecision).where(CollectionDecision.batch_id == polled.batch_id)) == 1
            publications = s.scalar(select(func.count()).select_from(Job).where(Job.kind == "publish_collection"))
        assert publications == (1 if winner == "approve" else 0)
        assert view["state"] == ("approved" if winner == "approve" else "declined")
        approved, names = polled.batch_id, ["a.png", "m51.fits"]
        if winner == "decline":  # the publication below needs an approved batch
            make_small_png(folder / "b.png", 3)
            approved, names = batches.poll_project(ctx, "zoo").batch_id, ["b.png"]
            run_sent(ctx)
            batches.approve(ctx, approved, by="alice")

        # a poll while the approved batch is being published: the new file makes a batch of its own
        make_small_png(folder / "later.png", 2)
        second = batches.poll_project(ctx, "zoo", enqueue=False)
        assert (second.found, second.taken) == (1, 1)
        run_sent(ctx)  # the publication
        published = views.get_batch(ctx, approved)
        assert published["state"] == "published"
        rows = list(csv.DictReader(io.StringIO(requests.get(published["manifestURL"], timeout=30).text)))
        assert sorted(r["metadata:#source_name"] for r in rows) == names
        assert views.get_batch(ctx, second.batch_id)["state"] == "retrieving"
        assert requests.get(f"{app.url}/public/collections/zoo/{second.batch_id}/", timeout=30).status_code == 404
    finally:
        app.stop()
