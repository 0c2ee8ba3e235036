"""The collections family end to end in one process, on SQLite and PostgreSQL: a folder of real
files (a FITS image made with astropy, a 16-bit TIFF, a ~5 MB PNG, a text file) is polled, retrieved
into quarantine, converted, held until approved, published with its Zooniverse manifest, served
over HTTP and imported by a local fake Panoptes; the owner hears each step by e-mail (aiosmtpd)
and by signed webhook."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
from sqlalchemy import select

from exporter import webhooks
from exporter.collections import batches, projects, publication, views
from exporter.collections.models import CollectionDecision, CollectionFile, CollectionSourceFile
from exporter.errors import InvalidRequest, NotFound

from .collections_helpers import LiveApp, SmtpServer, make_big_png, make_fits, make_small_png, make_tiff16, run_sent
from .panoptes_fake import TOKEN, FakePanoptes
from .webhook_receiver import start_receiver

LIMIT = 1_000_000


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def _settings(ctx, tmp_path, smtp=None, **extra):
    values = {"collections_source_roots": str(tmp_path / "sources"), "collections_settle_seconds": 0, "webhook_allow_networks": webhooks_networks(), **extra}
    if smtp is not None:
        values.update(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="exporter@example.org")
    ctx.settings = ctx.settings.replace(**values)


def webhooks_networks():
    from exporter.config import as_networks

    return as_networks("WEBHOOK_ALLOW_NETWORKS", "127.0.0.1/32")


def _source(tmp_path, name="science"):
    folder = tmp_path / "sources" / name
    folder.mkdir(parents=True)
    return folder


def test_a_collection_goes_from_the_folder_to_zooniverse_once_approved(ctx, tmp_path, smtp):
    panoptes = FakePanoptes().start()
    receiver, hook_server = start_receiver()
    app = LiveApp(ctx)
    _settings(ctx, tmp_path, smtp, public_url=app.url, zooniverse_url=panoptes.api, zooniverse_token=TOKEN, zooniverse_allow_networks=webhooks_networks(), zooniverse_poll_seconds=0.1)
    app.start()
    folder = _source(tmp_path)
    make_fits(folder / "ngc1300.fits")
    (folder / "deep").mkdir()
    make_tiff16(folder / "deep" / "field.tiff")
    make_big_png(folder / "big.png")
    (folder / "notes.txt").write_text("not an image\n")
    try:
        project, grant = projects.add_project(ctx, "galaxy-zoo-lsst", str(folder), "pi@example.org", owner_name="Pat Investigator", zooniverse_project="1234", callback_url=receiver.url + "/hook")
        assert grant.startswith("cg_") and projects.check_grant(ctx, project.name, grant) and not projects.check_grant(ctx, project.name, grant + "x")

        polled = batches.poll_project(ctx, project.name)
        assert (polled.found, polled.taken, polled.waiting) == (4, 4, 0)
        assert batches.poll_project(ctx, project.name).found == 0  # nothing is taken twice
        assert run_sent(ctx)[0] == "succeeded"
        view = views.get_batch(ctx, polled.batch_id)
        assert view["state"] == "awaiting_approval" and view["counts"] | {"cap": 0} == {"files": 4, "retrieved": 4, "converted": 3, "refused": 1, "waiting": 0, "cap": 0}
        [refused] = view["refusedFiles"]
        assert refused["sourceName"] == "notes.txt" and refused["reason"].startswith("unsupported file type"), refused
        fits_file = next(f for f in view["files"] if f["sourceName"] == "ngc1300.fits")
        assert fits_file["objectId"] == "NGC 1300" and fits_file["metadata"]["FILTER"] == "r" and fits_file["converted"]
        with ctx.db.session() as s:
            files = list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == polled.batch_id)))
        for f in files:  # checksummed copies in quarantine, never reachable without a login
            assert f.sha256 == hashlib.sha256(ctx.storage.read_bytes(f.quarantine_key)).hexdigest() == hashlib.sha256((folder / f.source_name).read_bytes()).hexdigest()
            assert app.get(f"/public/{f.quarantine_key}").status_code == 404
            if f.converted_key:
                assert app.get(f"/public/{f.converted_key}").status_code == 404
                assert app.get(f"/public/collections/{project.name}/{polled.batch_id}/{f.external_id}.{f.extension}").status_code == 404
        assert smtp.wait_for(2) and any("retrieved" in s for s in smtp.subjects()) and any("waiting for approval" in s for s in smtp.subjects())
        retrieved = next(m for m in smtp.messages if "retrieved" in m["Subject"])
        assert retrieved["To"] == "pi@example.org" and "may remove them" in retrieved.get_content() and "notes.txt" in retrieved.get_content()

        with pytest.raises(InvalidRequest) as exc:
            batches.decline(ctx, polled.batch_id, by="alice", reason="  ")
        assert exc.value.field == "reason"
        batches.approve(ctx, polled.batch_id, by="alice", note="rights checked")
        with pytest.raises(InvalidRequest):
            batches.approve(ctx, polled.batch_id, by="bob")  # decided once
        run_sent(ctx)  # the publication, then the import, the e-mails and webhooks they send
        run_sent(ctx)
        view = views.get_batch(ctx, polled.batch_id)
        assert view["state"] == "imported", view
        assert [(d["action"], d["by"], d["note"]) for d in view["decisions"]] == [("approve", "alice", "rights checked")]

        manifest = app.get(view["manifestURL"].removeprefix(app.url))
        assert manifest.status_code == 200 and manifest.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(manifest.text)))
        assert len(rows) == 3 and {r["metadata:#source_name"] for r in rows} == {"ngc1300.fits", "deep/field.tiff", "big.png"}
        assert set(rows[0]) >= {"external_id", "location:1", "metadata:#object_id", "metadata:FILTER"}
        by_name = {r["metadata:#source_name"]: r for r in rows}
        assert by_name["ngc1300.fits"]["metadata:#object_id"] == "NGC 1300" and by_name["ngc1300.fits"]["metadata:RA"]
        for r in rows:
            assert r["location:1"].endswith((".png", ".jpg")) and r["location:1"].startswith(f"{app.url}/public/collections/{project.name}/{polled.batch_id}/")
            got = app.get(r["location:1"].removeprefix(app.url))
            assert got.status_code == 200 and got.headers["Content-Type"] in ("image/png", "image/jpeg") and len(got.content) < LIMIT
        assert len({r["external_id"] for r in rows}) == 3

        [post] = panoptes.posts("/api/subject_set_imports")
        assert post["headers"]["Content-Type"] == "application/json" and post["headers"]["Accept"] == "application/vnd.api+json; version=1" and post["headers"]["Authorization"] == f"Bearer {TOKEN}"
        set_id = projects.project(ctx, project.name).subject_set_id
        assert json.loads(post["body"]) == {"subject_set_imports": {"source_url": view["manifestURL"], "links": {"subject_set": set_id}}}
        assert len(panoptes.posts("/api/subject_sets")) == 1 and view["import"]["importedCount"] == 3 and view["import"]["failedCount"] == 0
        assert {eid for (_s, eid) in panoptes.subjects} == {r["external_id"] for r in rows}

        subjects = smtp.wait_for(5)
        for words in ("was approved", "is published", "imported into Zooniverse"):
            assert any(words in m["Subject"] for m in subjects), smtp.subjects()
        published = next(m for m in subjects if "is published" in m["Subject"])
        assert view["manifestURL"] in published.get_content()
        calls = receiver.wait_for(5)
        events = [c.json["event"] for c in calls]
        assert {"collection.retrieved", "collection.awaiting", "collection.approved", "collection.published", "collection.imported"} <= set(events)
        assert all(webhooks.verify_signature(webhooks.secret(ctx), c.headers["X-Exporter-Timestamp"], c.body, c.headers["X-Exporter-Signature"]) for c in calls)
        assert next(c for c in calls if c.json["event"] == "collection.published").json["batch"]["manifestURL"] == view["manifestURL"]

        # Another project's batch with the same FITS file shows the overlap to its approver.
        other = _source(tmp_path, "other")
        make_fits(other / "again.fits")
        projects.add_project(ctx, "second-look", str(other), "other@example.org")
        second = batches.poll_project(ctx, "second-look")
        run_sent(ctx)
        [hit] = views.get_batch(ctx, second.batch_id)["overlap"]
        assert hit["project"] == project.name and hit["matchedBy"] == "sha256" and hit["file"] == "again.fits"

        # Publishing again keeps the external ids (Zooniverse updates the subjects) and retires the old URLs.
        old = [r["location:1"] for r in rows]
        publication.republish(ctx, polled.batch_id, by="alice")
        run_sent(ctx)
        run_sent(ctx)
        again = views.get_batch(ctx, polled.batch_id)
        rows2 = list(csv.DictReader(io.StringIO(app.get(again["manifestURL"].removeprefix(app.url)).text)))
        assert {r["external_id"] for r in rows2} == {r["external_id"] for r in rows} and again["manifestURL"] != view["manifestURL"]
        assert all(app.get(u.removeprefix(app.url)).status_code == 404 for u in old)
    finally:
        app.stop()
        panoptes.stop()
        hook_server.shutdown()


def test_until_data_rights_are_approved_a_batch_holds_100_objects(ctx, tmp_path, smtp):
    _settings(ctx, tmp_path, smtp)
    folder = _source(tmp_path)
    for i in range(130):
        make_small_png(folder / f"obj{i:03d}.png", seed=i)
    projects.add_project(ctx, "capped", str(folder), "pi@example.org")
    first = batches.poll_project(ctx, "capped")
    assert (first.found, first.taken, first.waiting) == (130, 100, 30)
    run_sent(ctx)
    view = views.get_batch(ctx, first.batch_id)
    assert view["counts"]["files"] == 100 and view["counts"]["converted"] == 100 and view["counts"]["waiting"] == 30 and view["counts"]["cap"] == 100
    capped = next(m for m in smtp.wait_for(3) if "wait for a later batch" in m["Subject"])
    assert "data rights" in capped.get_content() and "30 more wait" in capped.get_content()
    with pytest.raises(NotFound):
        projects.set_data_rights(ctx, "nope", True, by="admin")
    projects.set_data_rights(ctx, "capped", True, by="admin", note="agreement signed")
    second = batches.poll_project(ctx, "capped")
    assert (second.found, second.taken, second.waiting) == (0, 30, 0)
    with ctx.db.session() as s:
        taken = s.execute(select(CollectionSourceFile.batch_id)).scalars().all()
        assert sorted(taken.count(b) for b in {first.batch_id, second.batch_id}) == [30, 100] and None not in taken
        assert [d.action for d in s.scalars(select(CollectionDecision))] == ["rights-approved"]


def test_a_declined_batch_is_never_published_and_its_owner_hears_why(ctx, tmp_path, smtp):
    app = LiveApp(ctx)
    _settings(ctx, tmp_path, smtp, public_url=app.url)
    app.start()
    folder = _source(tmp_path)
    make_small_png(folder / "a.png", 1)
    make_small_png(folder / "b.png", 2)
    try:
        projects.add_project(ctx, "declined", str(folder), "pi@example.org")
        b = batches.poll_project(ctx, "declined")
        run_sent(ctx)
        batches.decline(ctx, b.batch_id, by="carol", reason="images show identifiable people")
        run_sent(ctx)
        view = views.get_batch(ctx, b.batch_id)
        assert view["state"] == "declined" and view["manifestURL"] is None and view["publishJobId"] is None
        assert [(d["action"], d["by"], d["note"]) for d in view["decisions"]] == [("decline", "carol", "images show identifiable people")]
        with pytest.raises(InvalidRequest):
            batches.approve(ctx, b.batch_id, by="dave")
        declined = next(m for m in smtp.wait_for(3) if "was declined" in m["Subject"])
        assert "identifiable people" in declined.get_content()
        with ctx.db.session() as s:
            for f in s.scalars(select(CollectionFile)):
                assert app.get(f"/public/{f.converted_key}").status_code == 404
                assert app.get(f"/public/collections/declined/{b.batch_id}/{f.external_id}.png").status_code == 404
    finally:
        app.stop()


def test_an_undecided_request_expires_and_a_revoked_grant_stops_reading(ctx, tmp_path):
    _settings(ctx, tmp_path, collections_approval_seconds=0.001)
    folder = _source(tmp_path)
    make_small_png(folder / "a.png", 1)
    projects.add_project(ctx, "slow", str(folder), "pi@example.org")
    b = batches.poll_project(ctx, "slow")
    run_sent(ctx)
    with pytest.raises(InvalidRequest) as exc:
        batches.approve(ctx, b.batch_id, by="alice")
    assert "expired" in str(exc.value)
    view = views.get_batch(ctx, b.batch_id)
    assert view["state"] == "expired" and [d["action"] for d in view["decisions"]] == ["expire"]

    projects.revoke_grant(ctx, "slow", by="pi@example.org")
    make_small_png(folder / "b.png", 2)
    polled = batches.poll_project(ctx, "slow")
    assert polled.batch_id is None and "revoked" in polled.skipped
    assert "revoked" in projects.project(ctx, "slow").last_poll_error


def test_bad_projects_are_refused_with_the_field(ctx, tmp_path):
    _settings(ctx, tmp_path)
    folder = _source(tmp_path)
    cases = [
        (dict(name="Bad Name", source=str(folder), owner_email="a@b.org"), "name"),
        (dict(name="ok", source=str(folder), owner_email="nobody"), "owner"),
        (dict(name="ok", source="/etc", owner_email="a@b.org"), "source"),
        (dict(name="ok", source="ftp://x/y", owner_email="a@b.org"), "source"),
        (dict(name="ok", source=str(folder), owner_email="a@b.org", zooniverse_project="abc"), "zooniverseProject"),
        (dict(name="ok", source=str(folder), owner_email="a@b.org", subject_set="12"), "zooniverseProject"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidRequest) as exc:
            projects.add_project(ctx, **kwargs)
        assert exc.value.field == field, (kwargs, exc.value)
    projects.add_project(ctx, "ok", str(folder), "a@b.org")
    with pytest.raises(InvalidRequest) as exc:
        projects.add_project(ctx, "ok", str(folder), "a@b.org")
    assert exc.value.field == "name"


def test_an_s3_source_is_polled_through_the_storage_settings(ctx, tmp_path, moto_server):
    import boto3

    _settings(ctx, tmp_path, s3_endpoint_url=moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="science-platform")
    s3.put_object(Bucket="science-platform", Key="users/pat/zoo/one.fits", Body=make_fits(tmp_path / "one.fits").read_bytes())
    s3.put_object(Bucket="science-platform", Key="users/pat/zoo/_butler_zip_index.json", Body=json.dumps(BUTLER_INDEX).encode())
    projects.add_project(ctx, "s3-zoo", "s3://science-platform/users/pat/zoo/", "pi@example.org")
    b = batches.poll_project(ctx, "s3-zoo")
    assert (b.found, b.taken) == (1, 1)
    run_sent(ctx)
    [f] = views.get_batch(ctx, b.batch_id)["files"]
    assert f["converted"] and f["metadata"]["visit"] == "2025010200042" and f["metadata"]["dataset_type"] == "calexp" and f["metadata"]["OBJECT"] == "NGC 1300"
    s3.put_object(Bucket="science-platform", Key="users/pat/zoo/one.fits", Body=make_fits(tmp_path / "two.fits", seed=3).read_bytes())
    assert batches.poll_project(ctx, "s3-zoo").found == 1  # the same name with other bytes is a new file


BUTLER_INDEX = {
    "index_version": "V1",
    "refs": {
        "container_version": "V1",
        "universe_version": 7,
        "universe_namespace": "daf_butler",
        "dataset_types": {"calexp": {"name": "calexp", "storageClass": "ExposureF", "dimensions": ["instrument", "visit", "detector"]}},
        "compact_refs": {},
        "refs": {
            "6c3f6e33-7d2f-4d7e-9a0d-2a1b3c4d5e6f": {"dataset_type_name": "calexp", "run": "u/pat/run1", "data_id": {"instrument": "LSSTCam", "visit": 2025010200042, "detector": 94}},
        },
    },
    "artifact_map": {"one.fits": {"info": {"path": "one.fits", "formatter": "lsst.obs.base.formatters.fitsExposure.FitsExposureFormatter"}, "ids": ["6c3f6e33-7d2f-4d7e-9a0d-2a1b3c4d5e6f"]}},
}


def test_a_file_still_being_written_waits_for_the_next_poll(ctx, tmp_path):
    _settings(ctx, tmp_path, collections_settle_seconds=3600)
    folder = _source(tmp_path)
    make_small_png(folder / "fresh.png", 1)
    projects.add_project(ctx, "fresh", str(folder), "pi@example.org")
    assert batches.poll_project(ctx, "fresh").found == 0
    ctx.settings = ctx.settings.replace(collections_settle_seconds=0)
    polled = batches.poll_project(ctx, "fresh")
    assert (polled.found, polled.taken) == (1, 1)


def test_an_email_waits_out_a_server_that_is_down_and_is_sent_once(ctx, tmp_path):
    from datetime import timedelta

    from exporter.collections import notify
    from exporter.collections.models import CollectionBatch, CollectionEmail
    from exporter.db import utcnow

    from .conftest import free_port

    port = free_port()  # nothing listens there yet
    _settings(ctx, tmp_path, smtp_host="127.0.0.1", smtp_port=port)
    folder = _source(tmp_path)
    make_small_png(folder / "a.png", 1)
    projects.add_project(ctx, "mail", str(folder), "pi@example.org")
    polled = batches.poll_project(ctx, "mail")
    _task, job_id, _queue = ctx.sent.pop(0)
    from exporter import runner

    assert runner.run_job(ctx, job_id) == "succeeded"
    emails = [int(arg) for task, arg, queue in ctx.sent if task == notify.TASK and queue == "collections"]
    assert len(emails) == 2  # retrieved, awaiting: enqueued after the commit
    first = notify.send_email(ctx, emails[0])
    assert first.state == "retry" and first.retry_in > 0 and "Connection" in first.error
    assert notify.send_email(ctx, emails[0]).state == "skipped"  # a second message before it is due sends nothing
    server = SmtpServer(port).start()
    try:
        later = utcnow() + timedelta(hours=2)
        assert notify.send_email(ctx, emails[0], now=later).state == "sent"
        with ctx.db.session() as s:
            row = s.get(CollectionEmail, emails[0])
            assert (row.state, row.attempts) == ("sent", 2) and row.sent_at is not None
        assert notify.send_email(ctx, emails[0], now=later).state == "skipped"  # sent once
        assert notify.sweep(ctx, now=later) == [emails[1]]  # the other one's message is treated as lost
        assert notify.send_email(ctx, emails[1]).state == "sent"
        assert [m["Subject"].strip() for m in server.wait_for(2)] == ["mail: batch 1 retrieved (1 files); you may remove them from your collection", "mail: batch 1 is waiting for approval"]
    finally:
        server.stop()

    # Written in the transaction of the change it tells of: rolled back with it, never sent.
    with pytest.raises(RuntimeError):
        with ctx.db.session() as s:
            after = notify.notify(ctx, s, s.get(CollectionBatch, polled.batch_id), "approved", by="x")
            assert after is not None
            raise RuntimeError("the decision's commit fails")
    with ctx.db.session() as s:
        assert s.scalars(select(CollectionEmail).where(CollectionEmail.event == "approved")).first() is None


def test_an_import_whose_answer_was_lost_is_found_not_asked_for_twice(ctx, tmp_path):
    from exporter import jobs, runner
    from exporter.errors import TransientError

    panoptes = FakePanoptes().start()
    app = LiveApp(ctx)
    _settings(ctx, tmp_path, public_url=app.url, zooniverse_url=panoptes.api, zooniverse_token="wrong-token", zooniverse_allow_networks=webhooks_networks(), zooniverse_poll_seconds=0.1)
    app.start()
    folder = _source(tmp_path)
    make_small_png(folder / "a.png", 1)
    make_small_png(folder / "b.png", 2)
    existing = panoptes.add_subject_set("1234")
    try:
        projects.add_project(ctx, "lost", str(folder), "pi@example.org", zooniverse_project="1234", subject_set=existing)
        polled = batches.poll_project(ctx, "lost")
        run_sent(ctx)
        batches.approve(ctx, polled.batch_id, by="alice")
        run_sent(ctx)  # published; the import is refused: a wrong token
        view = views.get_batch(ctx, polled.batch_id)
        failed = jobs.get(ctx, view["importJobId"])
        assert failed.status == "failed" and "403" in failed.error and view["state"] == "published"
        assert panoptes.requests[-1]["status"] == 403

        ctx.settings = ctx.settings.replace(zooniverse_token=TOKEN)
        publication.republish(ctx, polled.batch_id, by="alice")
        panoptes.lose.append("POST /api/subject_set_imports")
        with pytest.raises(TransientError):
            run_sent(ctx)  # the new publication, then its import: Panoptes made it, but its answer was lost
        view = views.get_batch(ctx, polled.batch_id)
        assert view["import"]["state"] == "requesting" and view["import"]["id"] is None
        assert runner.run_job(ctx, view["importJobId"]) == "succeeded"  # looks the import up first
        assert len(panoptes.posts("/api/subject_set_imports")) == 2 and len(panoptes.imports) == 1  # one refused, one made
        view = views.get_batch(ctx, polled.batch_id)
        assert view["state"] == "imported" and view["import"]["importedCount"] == 2 and view["import"]["id"] == next(iter(panoptes.imports))
        assert panoptes.posts("/api/subject_sets") == []  # the project's own subject set was used
        panoptes.wait_imports()
    finally:
        app.stop()
        panoptes.stop()


def test_two_polls_at_once_make_one_batch(ctx, tmp_path):
    import threading

    _settings(ctx, tmp_path)
    folder = _source(tmp_path)
    for i in range(20):
        make_small_png(folder / f"p{i:02d}.png", i)
    projects.add_project(ctx, "twice", str(folder), "pi@example.org")
    start = threading.Barrier(4)
    results, errors = [], []

    def poll():
        start.wait()
        try:
            results.append(batches.poll_project(ctx, "twice", enqueue=False))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    made = [r for r in results if r.batch_id]
    assert len(made) == 1 and made[0].taken == 20
    assert all("another process" in r.skipped for r in results if not r.batch_id and r.skipped)
    with ctx.db.session() as s:
        assert s.scalars(select(CollectionSourceFile.batch_id).distinct()).all() == [made[0].batch_id]
        assert len(s.scalars(select(CollectionSourceFile.id)).all()) == 20


def test_each_publication_and_each_failed_job_is_told_once(ctx, tmp_path, smtp):
    """A batch published twice is told "published" twice, each with its own manifest URL, and each failed import once;
    the webhook's X-Exporter-Event names the event as its body does; a retried delivery is delivered once."""
    from datetime import timedelta

    from exporter.collections import notify
    from exporter.collections.models import CollectionBatch
    from exporter.db import utcnow

    panoptes = FakePanoptes().start()
    receiver, hook_server = start_receiver()
    receiver.plan.append(503)  # the first call (the batch's "retrieved") fails once
    app = LiveApp(ctx)
    _settings(ctx, tmp_path, smtp, public_url=app.url, zooniverse_url=panoptes.api, zooniverse_token="wrong-token", zooniverse_allow_networks=webhooks_networks())
    app.start()
    folder = _source(tmp_path)
    make_small_png(folder / "a.png", 1)
    try:
        projects.add_project(ctx, "twice", str(folder), "pi@example.org", zooniverse_project="1234", callback_url=receiver.url)
        polled = batches.poll_project(ctx, "twice")
        assert run_sent(ctx).count("retry") == 1
        batches.approve(ctx, polled.batch_id, by="alice")
        run_sent(ctx)  # published; its import refused (a wrong token): failed
        first = views.get_batch(ctx, polled.batch_id)
        publication.republish(ctx, polled.batch_id, by="alice")
        run_sent(ctx)
        second = views.get_batch(ctx, polled.batch_id)
        assert first["manifestURL"] and second["manifestURL"] and first["manifestURL"] != second["manifestURL"]
        assert first["publishJobId"] != second["publishJobId"] and first["importJobId"] != second["importJobId"]

        published = [m for m in smtp.wait_for(7) if "is published" in m["Subject"]]
        assert [first["manifestURL"] in published[0].get_content(), second["manifestURL"] in published[1].get_content()] == [True, True]
        assert len([m for m in smtp.messages if "failed" in m["Subject"]]) == 2

        # The retried "retrieved" is delivered now, once; nothing else is sent again.
        [retrying] = [n for n in webhooks.notifications_of(ctx, first["jobId"]) if n.state == "pending"]
        assert webhooks.deliver(ctx, retrying.id, now=utcnow() + timedelta(hours=1)).state == "delivered"
        assert webhooks.deliver(ctx, retrying.id, now=utcnow() + timedelta(hours=2)).state == "skipped"
        with ctx.db.session() as s:  # the hook run again for the same publication writes nothing new
            assert notify.notify(ctx, s, s.get(CollectionBatch, polled.batch_id), "published", job_id=second["publishJobId"]) is None
        calls = receiver.calls
        for c in calls:
            assert c.headers["X-Exporter-Event"] == c.json["event"], (c.headers, c.json["event"])
        events = [c.json["event"] for c in calls if c.headers["X-Exporter-Attempt"] == "1" or c.json["event"] != "collection.retrieved"]
        assert sorted(events) == sorted(["collection.retrieved", "collection.awaiting", "collection.approved", *["collection.published", "collection.failed"] * 2])
        told = [c.json for c in calls if c.json["event"] == "collection.published"]
        assert [(t["jobId"], t["manifestURL"]) for t in told] == [(first["publishJobId"], first["manifestURL"]), (second["publishJobId"], second["manifestURL"])]
        assert [c.json["jobId"] for c in calls if c.json["event"] == "collection.failed"] == [first["importJobId"], second["importJobId"]]
        retrieved = [c for c in calls if c.json["event"] == "collection.retrieved"]
        assert [c.headers["X-Exporter-Attempt"] for c in retrieved] == ["1", "2"] and len({c.headers["X-Exporter-Delivery"] for c in retrieved}) == 1
    finally:
        app.stop()
        panoptes.stop()
        hook_server.shutdown()


def test_cleanup_deletes_quarantine_after_the_retention_and_never_public_objects(ctx, tmp_path):
    """COLLECTIONS_QUARANTINE_DAYS after a batch last changed, cleanup deletes a declined or expired batch's quarantined copies and
    converted images, and a published batch's converted images; its public objects stay and re-publication still works."""
    from datetime import timedelta

    from exporter import cleanup
    from exporter.collections import retention
    from exporter.db import utcnow

    _settings(ctx, tmp_path, collections_quarantine_days=7)
    folder = _source(tmp_path)
    projects.add_project(ctx, "kept", str(folder), "pi@example.org")

    def batch_of(name: str, seed: int) -> int:
        make_small_png(folder / name, seed)
        b = batches.poll_project(ctx, "kept")
        run_sent(ctx)
        return b.batch_id

    declined, published = batch_of("a.png", 1), batch_of("b.png", 2)
    batches.decline(ctx, declined, by="carol", reason="no")
    batches.approve(ctx, published, by="alice")
    run_sent(ctx)
    ctx.settings = ctx.settings.replace(collections_approval_seconds=0.001)
    expired = batch_of("c.png", 3)
    batches.expire_requests(ctx)
    assert views.get_batch(ctx, expired)["state"] == "expired"
    ctx.settings = ctx.settings.replace(collections_approval_seconds=3600)

    def files(batch_id: int) -> list[CollectionFile]:
        with ctx.db.session() as s:
            return list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == batch_id)))

    def there(key: str) -> bool:
        return ctx.storage.stat(key) is not None

    before = {b: files(b) for b in (declined, published, expired)}
    manifest_key = views.get_batch(ctx, published)["manifestURL"].split("/public/", 1)[1]
    quarantined = [k for fs in before.values() for f in fs for k in (f.quarantine_key, f.converted_key)]
    assert all(map(there, quarantined)) and there(manifest_key) and all(there(f.public_key) for f in before[published])

    assert cleanup.run(ctx, now=utcnow() + timedelta(days=6))["collections_quarantine_deleted"] == 0
    assert all(map(there, quarantined))
    report = cleanup.run(ctx, now=utcnow() + timedelta(days=8), orphan_grace_seconds=10**9)
    assert report["collections_quarantine_deleted"] == 5  # two copies each of the declined and the expired, the published one's converted image
    for b in (declined, expired):
        [f] = files(b)
        assert not there(f.quarantine_key) and not there(f.converted_key)
        assert views.get_batch(ctx, b)["quarantine"]["originalsDeletedAt"] and views.get_batch(ctx, b)["quarantine"]["convertedDeletedAt"]
    [f] = files(published)
    assert there(f.quarantine_key) and not there(f.converted_key) and there(f.public_key) and there(manifest_key)
    assert views.quarantined_image(ctx, f.id) is None  # the approvers' thumbnail is gone too
    view = views.get_batch(ctx, published)
    assert view["quarantine"]["originalsDeletedAt"] is None and view["quarantine"]["convertedDeletedAt"] and view["files"][0]["converted"]
    assert cleanup.run(ctx, now=utcnow() + timedelta(days=30))["collections_quarantine_deleted"] == 0  # once

    # Published again after its converted image was deleted: from its public copy, the same external id.
    publication.republish(ctx, published, by="alice")
    run_sent(ctx)
    again = views.get_batch(ctx, published)
    [f2] = files(published)
    assert again["state"] == "published" and again["manifestURL"] != view["manifestURL"] and there(f2.public_key) and f2.public_key != f.public_key
    assert ctx.storage.read_bytes(f2.public_key) == ctx.storage.read_bytes(f.public_key) and f2.external_id == f.external_id

    # A batch that changes between cleanup's read and its compare-and-set is left alone; a crash after the commit leaves orphans cleanup removes.
    later = batch_of("d.png", 4)
    batches.decline(ctx, later, by="carol", reason="no")
    [(batch_id, state, updated_at)] = retention.due(ctx, utcnow() + timedelta(days=8))
    assert batch_id == later and retention.mark(ctx, batch_id, "awaiting_approval", updated_at, utcnow()) is None
    keys = retention.mark(ctx, batch_id, state, updated_at, utcnow())
    [f] = files(later)
    assert sorted(keys) == sorted([f.quarantine_key, f.converted_key]) and all(map(there, keys))  # marked, not yet deleted: the crash
    assert cleanup.run(ctx, now=utcnow() + timedelta(days=8), orphan_grace_seconds=0)["removed_orphans"] == 2
    assert not any(map(there, keys)) and all(there(k) for k in (f2.public_key, manifest_key))
