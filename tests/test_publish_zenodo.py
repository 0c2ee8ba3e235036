"""Publishing public exports to Zenodo, against a local server that speaks its records API (tests/zenodo_fake.py).

First publication, a second export as version 2 of the same concept with only its own files,
an unchanged export not republished, 429 and 5xx honoured, lost answers and failed runs
resumed without a second draft or version, Zenodo's 4xx messages in the job's error,
automatic publication after a full export, and the job's view.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import threading
import zipfile

import pytest
import requests
from sqlalchemy import select

from exporter import jobs, runner
from exporter.errors import ConfigError, InvalidRequest, NotFound, TransientError
from exporter.models import TaskStatus
from exporter.publish import zenodo
from exporter.publish.client import ZenodoClient, ZenodoError
from exporter.publish.models import ZenodoConcept, ZenodoFile, ZenodoVersion
from exporter.raids import registry

from .raids_helpers import AGENCY, OTHER_AGENCY, OTHER_SP, artifact, future, record, run_export, save
from .zenodo_fake import TOKEN, FakeZenodo

KEYS = ["raids.zip", "manifest.json", "SHA256SUMS", "ro-crate-metadata.json"]


@pytest.fixture
def fake():
    server = FakeZenodo().start()
    yield server
    server.stop()


def configure(ctx, fake, **more):
    ctx.settings = ctx.settings.replace(
        zenodo_url=fake.api, zenodo_token=TOKEN, zenodo_allow_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        zenodo_retry_backoff_ms=10, zenodo_retry_after_max=5, export_settle_seconds=0, **more,
    )
    return ctx


@pytest.fixture
def zctx(ctx, fake):
    return configure(ctx, fake)


@pytest.fixture
def zpg(pg_ctx, fake):
    return configure(pg_ctx, fake)


def export(ctx, *records):
    save(ctx, *records)
    return run_export(ctx, "export_public", {"agency": AGENCY})


def publish(ctx, export_id=None, expect="succeeded"):
    job = zenodo.request_publication(ctx, AGENCY, export_id, requested_by="test", enqueue=False)
    status = runner.run_job(ctx, job.id)
    done = jobs.get(ctx, job.id)
    assert status == expect, (status, done.error)
    return done


def resume(ctx, job_id):
    """Run a job that a transient failure gave back (pending again), as the Celery retry would."""
    assert jobs.get(ctx, job_id).status == "pending"
    runner.run_job(ctx, job_id)
    return jobs.get(ctx, job_id)


def publish_transient(ctx, export_id=None):
    job = zenodo.request_publication(ctx, AGENCY, export_id, requested_by="test", enqueue=False)
    with pytest.raises(TransientError):
        runner.run_job(ctx, job.id)
    return job.id


def md5s(ctx, job) -> dict[str, str]:
    return {artifact(job, n).filename: artifact(job, n).md5 for n in zenodo.FILE_ARTIFACTS}


def test_first_publication_makes_the_concept_record_with_the_export_files_and_metadata(zctx, fake):
    ex = export(zctx, record(1), record(2, access="embargoed", expiry=future(), secret="HIDDEN"))
    job = publish(zctx)
    view = zenodo.publication_view(job)
    [rec] = fake.published()
    assert view["status"] == "published" and view["record_id"] == rec["id"] and view["export_job_id"] == ex.id
    assert view["doi"] == f"10.5072/zenodo.{rec['id']}" and view["concept_doi"] == f"10.5072/zenodo.{rec['parent']}"
    assert view["version"] == ex.result["generated_at"][:19] + "Z"
    assert view["links"] == {"record": f"{fake.url}/records/{rec['id']}", "doi": f"https://doi.org/{view['doi']}", "concept_doi": f"https://doi.org/{view['concept_doi']}"}
    assert [f["key"] for f in view["files"]] == KEYS and {f["key"]: f["md5"] for f in view["files"]} == md5s(zctx, ex)

    files = fake.files_of(rec["id"])
    assert list(files) == KEYS
    for name in zenodo.FILE_ARTIFACTS:
        art = artifact(ex, name)
        assert files[art.filename]["data"] == zctx.storage.read_bytes(art.key)
        assert files[art.filename]["checksum"] == "md5:" + hashlib.md5(files[art.filename]["data"]).hexdigest()

    md = rec["metadata"]
    assert md["resource_type"] == {"id": "dataset"} and md["rights"] == [{"id": "cc0-1.0"}]
    assert md["title"] == "RAiD registry of Registration agency 038sjwq14: public export"
    assert md["creators"] == [{"person_or_org": {"type": "organizational", "name": "Registration agency 038sjwq14", "identifiers": [{"scheme": "ror", "identifier": "038sjwq14"}]}}]
    assert md["version"] == view["version"] and md["publication_date"] and {"subject": "RAiD"} in md["subjects"]
    assert md["related_identifiers"] == [{"identifier": AGENCY, "scheme": "url", "relation_type": {"id": "iscompiledby"}}]
    for words in ("What was redacted and why", "Counts by access type: 1 embargoed, 1 open", "Watermark: every change recorded up to", "sha256sum -c SHA256SUMS", "/public/exports/public/038sjwq14/latest/"):
        assert words in md["description"], words
    assert "HIDDEN" not in json.dumps(rec["metadata"])
    with zipfile.ZipFile(io.BytesIO(files["raids.zip"]["data"])) as archive:  # the files are the public view too
        assert not any(b"HIDDEN" in archive.read(n) for n in archive.namelist())
    assert not any(b"HIDDEN" in f["data"] for f in files.values())

    assert fake.count("POST", exact="/api/records") == 1 and fake.count("POST", "/versions") == 0
    with zctx.db.session() as s:
        concept = s.get(ZenodoConcept, "038sjwq14")
        assert (concept.concept_record_id, concept.concept_doi, concept.latest_record_id, concept.holder_job_id) == (rec["parent"], view["concept_doi"], rec["id"], None)
        version = s.scalars(select(ZenodoVersion)).one()
        assert (version.state, version.doi, version.draft_id) == ("published", view["doi"], rec["id"])
        assert {f.key: f.committed_md5 for f in s.scalars(select(ZenodoFile))} == md5s(zctx, ex)
        status = s.scalars(select(TaskStatus).where(TaskStatus.task_type == "publish_zenodo")).one()
        assert status.state == "succeeded" and status.value["doi"] == view["doi"]


def test_a_second_export_becomes_version_2_of_the_same_concept_with_only_its_own_files(zpg, fake):
    first_export = export(zpg, record(1))
    first = zenodo.publication_view(publish(zpg))
    second_export = export(zpg, record(2))
    second = zenodo.publication_view(publish(zpg))
    assert second["status"] == "published" and second["record_id"] != first["record_id"]
    assert second["concept_doi"] == first["concept_doi"] and second["doi"] != first["doi"]
    rec = fake.records[second["record_id"]]
    assert rec["parent"] == fake.records[first["record_id"]]["parent"] and fake.view(rec)["versions"]["index"] == 2
    assert fake.count("POST", f"/records/{first['record_id']}/versions") == 1 and fake.count("POST", exact="/api/records") == 1
    assert [s for m, p, s in fake.calls if p.endswith("/versions/latest")] == [302]  # Zenodo redirects to the latest version; followed
    assert {k: f["checksum"] for k, f in fake.files_of(second["record_id"]).items()} == {k: "md5:" + v for k, v in md5s(zpg, second_export).items()}
    assert fake.files_of(second["record_id"])["raids.zip"]["data"] == zpg.storage.read_bytes(artifact(second_export, "archive").key)
    assert {k: f["checksum"] for k, f in fake.files_of(first["record_id"]).items()} == {k: "md5:" + v for k, v in md5s(zpg, first_export).items()}
    md = rec["metadata"]
    assert md["version"] == second["version"] and md["publication_date"]  # the new version's draft had neither
    assert md["related_identifiers"][0] == {"identifier": first["doi"], "scheme": "doi", "relation_type": {"id": "isnewversionof"}, "resource_type": {"id": "dataset"}}
    assert fake.drafts() == []


def test_dois_are_read_from_zenodos_answers_whatever_their_prefix(pg_ctx):
    production = FakeZenodo(doi_prefix="10.5281").start()  # zenodo.org's prefix; the sandbox's differs
    try:
        ctx = configure(pg_ctx, production)
        export(ctx, record(1))
        first = publish(ctx)
        export(ctx, record(2))
        second = publish(ctx)
    finally:
        production.stop()
    assert first.result["doi"] == f"10.5281/zenodo.{first.result['record_id']}" and second.result["doi"].startswith("10.5281/")
    assert first.result["concept_doi"] == second.result["concept_doi"] and first.result["concept_doi"].startswith("10.5281/")
    assert second.result["previous_doi"] == first.result["doi"]


def test_an_unchanged_export_is_not_republished(zpg, fake):
    export(zpg, record(1))
    first = publish(zpg)
    again = run_export(zpg, "export_public", {"agency": AGENCY})  # the same raids: a new archive, the same records
    calls = len(fake.calls)
    view = zenodo.publication_view(publish(zpg, again.id))
    assert view["status"] == "unchanged" and len(fake.calls) == calls
    assert (view["record_id"], view["doi"], view["version"]) == (first.result["record_id"], first.result["doi"], first.result["version"])
    assert [f["key"] for f in view["files"]] == KEYS
    repeat = zenodo.request_publication(zpg, AGENCY, first.result["export_job_id"], requested_by="test", enqueue=False)
    assert repeat.id == first.id  # the same export asked again: the job that published it
    assert len(fake.published()) == 1


def test_two_publications_of_one_agency_at_once_take_turns(zpg, fake):
    """While one job publishes an agency, another (another export) gives its turn back without a call to Zenodo, then becomes the next version."""
    older = export(zpg, record(1))
    newer = export(zpg, record(2))
    first = zenodo.request_publication(zpg, AGENCY, older.id, requested_by="test", enqueue=False)
    second = zenodo.request_publication(zpg, AGENCY, newer.id, requested_by="test", enqueue=False)
    uploading, release = threading.Event(), threading.Event()

    def hold(record_id, key, files):
        uploading.set()
        release.wait(20)

    fake.on_commit = hold
    outcome = {}
    t = threading.Thread(target=lambda: outcome.update(status=runner.run_job(zpg, first.id)))
    t.start()
    try:
        assert uploading.wait(20)
        calls = len(fake.calls)
        with pytest.raises(TransientError, match=f"being published to Zenodo by job {first.id}"):
            runner.run_job(zpg, second.id)
        assert len(fake.calls) == calls and jobs.get(zpg, second.id).status == "pending"
    finally:
        fake.on_commit = None
        release.set()
        t.join(30)
    assert outcome == {"status": "succeeded"}
    job = resume(zpg, second.id)
    assert job.status == "succeeded", job.error
    one, two = (fake.records[jobs.get(zpg, j).result["record_id"]] for j in (first.id, second.id))
    assert one["parent"] == two["parent"] and [fake.view(r)["versions"]["index"] for r in (one, two)] == [1, 2]
    assert fake.count("POST", exact="/api/records") == 1 and fake.drafts() == [] and len(fake.published()) == 2


def test_a_429_is_honoured_with_its_retry_after(zpg, fake):
    export(zpg, record(1))
    fake.fail(429, "POST", "/draft/files", headers={"Retry-After": "1"})
    job = publish(zpg)
    starts = [t for m, p, t in fake.times if m == "POST" and p.endswith("/draft/files")]
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.0
    assert [s for m, p, s in fake.calls if m == "POST" and p.endswith("/draft/files")] == [429, 201]
    assert job.result["status"] == "published"


def test_a_spent_rate_limit_waits_for_its_reset_and_a_long_wait_gives_the_job_back(fake):
    waits: list[float] = []
    client = ZenodoClient(fake.api, TOKEN, requests.Session(), sleep=waits.append, clock=lambda: 1000.0, wait_max=30)
    fake.quota = (0, 1012)
    client.call("GET", "/user/records")
    assert waits == []
    client.call("GET", "/user/records")
    assert waits == [12.0]
    fake.quota = (0, 2000)
    client.call("GET", "/user/records")
    with pytest.raises(TransientError, match="rate limit resets in 1000 s"):
        client.call("GET", "/user/records")
    fake.quota = None
    fake.fail(429, headers={"Retry-After": "3600"})
    client._not_before = 0
    with pytest.raises(TransientError, match="asks to wait 3600 s"):
        client.call("GET", "/user/records")


def test_the_attempts_back_off_with_jitter_and_then_give_the_job_back(fake):
    waits: list[float] = []
    client = ZenodoClient(fake.api, TOKEN, requests.Session(), sleep=waits.append, attempts=3, backoff=2.0, wait_max=300)
    fake.fail(503, "GET", "/user/records", times=3)
    with pytest.raises(TransientError, match=r"GET /user/records failed 3 times, last: HTTP 503"):
        client.call("GET", "/user/records")
    assert len(waits) == 2 and 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0  # 2 s, then 4 s, half of each jitter
    waits.clear()
    fake.fail(429, "POST", "/records", times=1)  # not processed: even a create is sent again, after the backoff
    client.create_draft({"metadata": {"title": "t"}})
    assert len(waits) == 1 and 1.0 <= waits[0] <= 2.0 and len(fake.drafts()) == 1
    fake.fail(500, "POST", "/records", times=1)
    with pytest.raises(TransientError, match="not repeated blindly"):
        client.create_draft({"metadata": {"title": "t"}})


def test_5xx_is_retried_with_backoff_and_a_create_is_never_repeated_blindly(zpg, fake):
    export(zpg, record(1))
    fake.fail(500, "PUT", "/content", times=2)
    fake.fail(502, "POST", "/api/records", after=True)  # the draft is made, its answer lost
    job_id = publish_transient(zpg)
    assert len(fake.drafts()) == 1
    job = resume(zpg, job_id)
    assert job.status == "succeeded", job.error
    assert fake.count("POST", exact="/api/records") == 1 and len(fake.records) == 1  # found again, never a second draft
    assert [s for m, p, s in fake.calls if m == "PUT" and p.endswith("raids.zip/content")] == [500, 500, 200]


def test_a_500_while_starting_or_committing_uploads_resumes_without_a_second_draft(zpg, fake):
    export(zpg, record(1))
    fake.fail(500, "POST", "/draft/files", after=True)  # the entries are made on Zenodo, the answer is lost
    fake.fail(500, "POST", "raids.zip/commit", times=2)  # a commit is safe to repeat: retried in the run
    job_id = publish_transient(zpg)
    [draft] = fake.drafts()
    assert {k: f["status"] for k, f in fake.files_of(draft["id"]).items()} == dict.fromkeys(KEYS, "pending")
    job = resume(zpg, job_id)
    assert job.status == "succeeded", job.error
    [rec] = fake.published()
    assert rec["id"] == draft["id"] and fake.count("POST", exact="/api/records") == 1
    assert set(fake.uploads.values()) == {1} and [s for m, p, s in fake.calls if p.endswith("raids.zip/commit")] == [500, 500, 200]
    assert all(f["checksum"] == "md5:" + hashlib.md5(f["data"]).hexdigest() for f in fake.files_of(rec["id"]).values())


def test_a_publish_whose_answer_was_lost_is_found_published(zpg, fake):
    ex = export(zpg, record(1))
    fake.fail(503, "POST", "/actions/publish", after=True)
    job_id = publish_transient(zpg)
    with zpg.db.session() as s:
        assert s.scalars(select(ZenodoVersion)).one().state == "publishing"
    job = resume(zpg, job_id)
    assert job.result["status"] == "published" and job.result["doi"] == fake.published()[0]["doi"]
    assert fake.count("POST", "/actions/publish") == 1 and fake.count("PUT", "/content") == len(KEYS)
    assert job.result["files"] == [{"key": k, "size": artifact(ex, n).size, "md5": artifact(ex, n).md5, "sha256": artifact(ex, n).sha256, "content_type": artifact(ex, n).content_type} for k, n in zip(KEYS, zenodo.FILE_ARTIFACTS, strict=True)]


def test_a_damaged_upload_is_sent_again_and_files_already_committed_are_kept(zpg, fake):
    export(zpg, record(1))

    def damage(record_id, key, files):
        if key == "manifest.json" and fake.uploads[(record_id, key)] == 1:
            files[key]["checksum"] = "md5:" + "0" * 32

    fake.on_commit = damage
    job_id = publish_transient(zpg)
    assert "damaged on the way" in jobs.get(zpg, job_id).error
    job = resume(zpg, job_id)
    assert job.status == "succeeded"
    [rec] = fake.published()
    assert {k: n for (_, k), n in fake.uploads.items()} == {"raids.zip": 1, "manifest.json": 2, "SHA256SUMS": 1, "ro-crate-metadata.json": 1}
    assert all(f["checksum"] == "md5:" + hashlib.md5(f["data"]).hexdigest() for f in fake.files_of(rec["id"]).values())


def test_a_4xx_fails_the_job_with_zenodos_message_and_a_newer_export_replaces_its_draft(zpg, fake):
    export(zpg, record(1))
    publish(zpg)
    export(zpg, record(2))
    fake.fail(400, "POST", "/actions/publish", body={"status": 400, "message": "A validation error occurred.", "errors": [{"field": "metadata.creators", "messages": ["Missing data for required field."]}]})
    failed = publish(zpg, expect="failed")
    assert "Zenodo refused POST" in failed.error and "A validation error occurred." in failed.error and "metadata.creators: Missing data" in failed.error
    assert zenodo.publication_view(failed)["error"] == failed.error
    [left] = fake.drafts()  # its draft stays open on Zenodo: a second `versions` call would be refused
    third = export(zpg, record(3))
    job = publish(zpg, third.id)
    assert job.result["status"] == "published" and fake.drafts() == [] and left["id"] not in fake.records
    with zpg.db.session() as s:
        assert sorted(v.state for v in s.scalars(select(ZenodoVersion))) == ["discarded", "published", "published"]
    assert [s for m, p, s in fake.calls if m == "POST" and p.endswith("/versions")] == [201, 201]  # the left draft deleted before asking


@pytest.mark.parametrize("refuse", [False, True], ids=["answered-with-the-open-draft", "refused"])
def test_a_draft_left_open_is_never_taken_for_the_new_version(zpg, fake, refuse):
    """Zenodo answers `versions` with the draft already open (InvenioRDM's service; here while its search does not
    show that draft yet), or refuses: either way the left draft is discarded, never reused for another export."""
    fake.refuse_second_version = refuse
    export(zpg, record(1))
    publish(zpg)
    second = export(zpg, record(2))
    fake.fail(400, "POST", "/actions/publish", body={"status": 400, "message": "A validation error occurred."})
    publish(zpg, expect="failed")
    [left] = fake.drafts()
    fake.hide_drafts_from_search = not refuse  # the search index has not caught up with the open draft
    third = export(zpg, record(3))
    job = publish(zpg, third.id)
    rec = fake.records[job.result["record_id"]]
    assert rec["id"] != left["id"] and left["id"] not in fake.records and fake.drafts() == []
    assert {k: f["checksum"] for k, f in fake.files_of(rec["id"]).items()} == {k: "md5:" + v for k, v in md5s(zpg, third).items()}
    with zpg.db.session() as s:
        states = {v.export_job_id: (v.state, v.draft_id) for v in s.scalars(select(ZenodoVersion))}
    assert states[second.id] == ("discarded", None) and states[third.id] == ("published", rec["id"])


def test_a_draft_that_exporter_did_not_open_stops_the_job_with_what_to_do(zpg, fake):
    export(zpg, record(1))
    first = publish(zpg)
    fake.new_version(fake.records[first.result["record_id"]])  # someone opened a new version by hand
    export(zpg, record(2))
    failed = publish(zpg, expect="failed")
    assert "that Exporter did not open; publish or delete it on Zenodo" in failed.error


def test_a_redirect_to_another_origin_is_not_followed(fake):
    other = FakeZenodo().start()
    try:
        client = ZenodoClient(fake.api, TOKEN, requests.Session(), sleep=lambda s: None)
        fake.fail(302, "GET", "/versions/latest", headers={"Location": f"{other.api}/records/1"})
        with pytest.raises(ZenodoError, match="outside"):
            client.latest_version("1")
        fake.fail(302, "GET", "/versions/latest", headers={"Location": f"{fake.url}/elsewhere/1"})
        with pytest.raises(ZenodoError, match="outside"):
            client.latest_version("1")
        assert other.calls == []  # the token never went to the other origin
    finally:
        other.stop()


def test_the_token_the_content_types_and_the_version_rules_are_enforced(fake):
    plain = requests.Session()
    assert plain.post(f"{fake.api}/records", json={}).status_code == 401
    assert plain.post(f"{fake.api}/records", json={}, headers={"Authorization": "Bearer nope"}).status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert plain.post(f"{fake.api}/records", data=b"{}", headers={**auth, "Content-Type": "text/plain"}).status_code == 415
    client = ZenodoClient(fake.api, TOKEN, plain, sleep=lambda s: None)
    draft = client.create_draft({"metadata": {"title": "t"}})
    client.start_uploads(draft["id"], ["a.txt"])
    assert plain.put(f"{fake.api}/records/{draft['id']}/draft/files/a.txt/content", data=b"x", headers={**auth, "Content-Type": "application/json"}).status_code == 415
    with pytest.raises(ZenodoError, match="title|publication_date"):
        client.publish(draft["id"])
    with pytest.raises(ZenodoError, match="published record"):
        client.new_version(draft["id"])


def test_publication_is_asked_for_automatically_after_each_full_public_export(zctx, fake):
    save(zctx, record(1))
    run_export(zctx, "export_public", {"agency": AGENCY})
    assert not any(t == "exporter.publish_zenodo" for t, _, _ in zctx.sent)  # not set to publish automatically
    zenodo.set_auto_publish(zctx, AGENCY, True)
    full = run_export(zctx, "export_public", {"agency": AGENCY})
    [(task, job_id, queue)] = [s for s in zctx.sent if s[0] == "exporter.publish_zenodo"]
    assert queue == "publish" and jobs.get(zctx, job_id).params == {"agency": "038sjwq14", "export": full.id}
    assert jobs.get(zctx, job_id).requested_by == "auto-publish"
    assert runner.run_job(zctx, job_id) == "succeeded" and len(fake.published()) == 1
    save(zctx, record(2))
    run_export(zctx, "export_public", {"agency": AGENCY, "mode": "incremental"})
    with zctx.db.session() as s:
        registry.ensure_agency(s, OTHER_AGENCY)
    save(zctx, record(3, sp=OTHER_SP, agency=OTHER_AGENCY))
    run_export(zctx, "export_public", {"agency": OTHER_AGENCY})
    assert len([s for s in zctx.sent if s[0] == "exporter.publish_zenodo"]) == 1  # not an incremental, not another agency


def test_requests_that_cannot_be_published_say_why(zpg, fake):
    save(zpg, record(1))
    with pytest.raises(NotFound, match="no succeeded full public export"):
        zenodo.request_publication(zpg, AGENCY)
    incremental = run_export(zpg, "export_public", {"agency": AGENCY, "mode": "incremental"})
    assert incremental.result["mode"] == "full"  # nothing before it: a full export
    delta = run_export(zpg, "export_public", {"agency": AGENCY, "mode": "incremental"})
    with pytest.raises(InvalidRequest, match="incremental"):
        zenodo.request_publication(zpg, AGENCY, delta.id)
    private = run_export(zpg, "export_private", {"service_point": 20000000})
    with pytest.raises(InvalidRequest, match="not a public export"):
        zenodo.request_publication(zpg, AGENCY, private.id)
    with pytest.raises(NotFound):
        zenodo.request_publication(zpg, "https://ror.org/0000000zz")
    zpg.settings = zpg.settings.replace(zenodo_token="")
    with pytest.raises(ConfigError, match="EXPORTER_ZENODO_URL"):
        zenodo.request_publication(zpg, AGENCY)


def test_an_export_beyond_zenodos_limits_is_refused_before_anything_is_sent(zpg, fake, monkeypatch):
    export(zpg, record(1))
    monkeypatch.setattr(zenodo, "MAX_RECORD_BYTES", 100)
    failed = publish(zpg, expect="failed")
    assert "a Zenodo record holds at most" in failed.error and fake.calls == []


def test_cli_publishes_and_prints_the_record_as_json(zpg, fake, monkeypatch):
    from click.testing import CliRunner

    from cli.main import main

    ex = export(zpg, record(1))
    result = CliRunner().invoke(main, ["publish", "zenodo", "--agency", "https://ror.org/038sjwq14", "--wait", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    [rec] = fake.published()
    assert out["status"] == "published" and out["record_id"] == rec["id"] and out["doi"] == rec["doi"] and out["concept_doi"].startswith("10.5072/")
    assert out["version"] and {f["key"]: f["md5"] for f in out["files"]} == md5s(zpg, ex)
    again = run_export(zpg, "export_public", {"agency": AGENCY})
    result = CliRunner().invoke(main, ["publish", "zenodo", "--agency", "038sjwq14", "--export", again.id, "--wait"])
    assert result.exit_code == 0 and "unchanged: version" in result.output and f"DOI: {rec['doi']} (https://doi.org/{rec['doi']})" in result.output

    result = CliRunner().invoke(main, ["publish", "auto", "--agency", "038sjwq14"])
    assert result.exit_code == 0 and "every successful full public export is published" in result.output
    result = CliRunner().invoke(main, ["publish", "status", "--agency", "038sjwq14", "--json"])
    status = json.loads(result.output)
    assert status["auto_publish"] and status["concept_doi"] == out["concept_doi"] and [v["state"] for v in status["versions"]] == ["unchanged", "published"]

    collect = zpg.enqueue
    import workers.app  # installs the Celery dispatcher on import; keep collecting instead

    zpg.enqueue = collect
    monkeypatch.setattr(workers.app, "install_dispatcher", lambda: None)
    save(zpg, record(2))
    newer = run_export(zpg, "export_public", {"agency": AGENCY})  # auto-publish is on: this sends a job
    result = CliRunner().invoke(main, ["publish", "zenodo", "--agency", "038sjwq14", "--export", newer.id])
    assert result.exit_code == 0 and "handed to the workers" in result.output
    assert [s[0] for s in zpg.sent].count("exporter.publish_zenodo") == 1  # the CLI joined the automatic job
    result = CliRunner().invoke(main, ["publish", "zenodo", "--agency", "05unknown1"])
    assert result.exit_code == 1 and "no registration agency 05unknown1" in result.output


def test_the_job_pages_show_the_dois_with_links_and_the_form_publishes(zpg, fake):
    from web import create_app

    from .test_pages import PASSWORD, login, submit_form

    zpg.settings = zpg.settings.replace(operator_password=PASSWORD)
    client = create_app(zpg).test_client()
    assert login(client).status_code == 302
    save(zpg, record(1))
    r = submit_form(client, "zenodo", agency="038sjwq14")
    assert r.status_code == 400 and "no succeeded full public export" in r.get_data(as_text=True)
    ex = run_export(zpg, "export_public", {"agency": AGENCY})
    r = submit_form(client, "zenodo", agency="038sjwq14")
    assert r.status_code == 302, r.get_data(as_text=True)
    job_id = r.headers["Location"].rsplit("/", 1)[1]
    assert jobs.get(zpg, job_id).params == {"agency": "038sjwq14", "export": ex.id}
    assert runner.run_job(zpg, job_id) == "succeeded"
    [rec] = fake.published()
    html = client.get(f"/pages/jobs/{job_id}").get_data(as_text=True)
    assert f'<a id="zenodo-doi" href="https://doi.org/{rec["doi"]}">{rec["doi"]}</a>' in html
    concept = fake.parent_dois[rec["parent"]]
    assert f'<a id="zenodo-concept-doi" href="https://doi.org/{concept}">{concept}</a>' in html
    assert f'<a id="zenodo-record" href="{fake.url}/records/{rec["id"]}">{rec["id"]}</a>' in html and "md5 <code>" in html
    html = client.get(f"/pages/jobs/{ex.id}").get_data(as_text=True)
    assert f'href="https://doi.org/{rec["doi"]}"' in html and f'href="/pages/jobs/{job_id}"' in html
    zpg.settings = zpg.settings.replace(zenodo_url="")
    r = submit_form(client, "zenodo", agency="038sjwq14")
    assert r.status_code == 400 and "EXPORTER_ZENODO_URL" in r.get_data(as_text=True)


def test_a_record_made_by_hand_is_adopted_and_continued(zpg, fake):
    client = ZenodoClient(fake.api, TOKEN, requests.Session(), sleep=lambda s: None)
    draft = client.create_draft({"metadata": {"title": "RAiD export, uploaded by hand", "resource_type": {"id": "dataset"}, "creators": [{"person_or_org": {"name": "ARDC"}}], "publication_date": "2023-01-01"}})
    client.start_uploads(draft["id"], ["raids.zip"])
    client.upload(draft["id"], "raids.zip", lambda: io.BytesIO(b"old"), 3)
    client.commit(draft["id"], "raids.zip")
    by_hand = client.publish(draft["id"])
    save(zpg, record(1))
    concept = zenodo.adopt_record(zpg, AGENCY, by_hand["id"])
    assert (concept.concept_record_id, concept.latest_record_id) == (by_hand["parent"]["id"], by_hand["id"])
    job = publish(zpg, run_export(zpg, "export_public", {"agency": AGENCY}).id)
    rec = fake.records[job.result["record_id"]]
    assert rec["parent"] == by_hand["parent"]["id"] and job.result["concept_doi"] == by_hand["parent"]["pids"]["doi"]["identifier"]
    assert list(fake.files_of(rec["id"])) == KEYS  # only its own files, none of the hand-made version's
    assert rec["metadata"]["related_identifiers"][0]["identifier"] == by_hand["pids"]["doi"]["identifier"]
    with pytest.raises(InvalidRequest, match="cannot adopt another"):
        zenodo.adopt_record(zpg, AGENCY, by_hand["id"])


@pytest.mark.parametrize("code", [302, 307, 308])
def test_a_redirect_from_zenodo_is_not_followed_so_the_token_stays_home(code):
    """Zenodo's API does not redirect; a 3xx (to another port here) is refused as it stands:
    neither the token nor a body goes to the Location."""
    from exporter.netsafety import safe_session
    from tests.http_servers import RedirectingServer, ScenarioServer

    other = ScenarioServer().start()
    api = RedirectingServer(f"{other.url}/data.csv", code).start()
    try:
        client = ZenodoClient(api.url + "/api", TOKEN, safe_session((ipaddress.ip_network("127.0.0.1/32"),)), sleep=lambda s: None)
        with pytest.raises(ZenodoError, match=f"\\({code}\\)"):
            client.call("GET", "/records/1")
        with pytest.raises(ZenodoError, match=f"\\({code}\\)"):
            client.create_draft({"metadata": {"title": "t"}})
    finally:
        api.stop()
        other.stop()
    assert [(m, h["Authorization"]) for m, _p, h, _b in api.seen] == [("GET", f"Bearer {TOKEN}"), ("POST", f"Bearer {TOKEN}")]
    assert other.requests == [] and other.posts == []
