"""Public and private exports: content, archive layout, verification, paging, outcomes, entry points."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import event, select

from exporter import jobs
from exporter.errors import InvalidRequest, NotFound
from exporter.models import TaskStatus
from exporter.raids import export as export_mod
from exporter.raids import registry
from exporter.raids.export import download_links, estimate_size, request_export
from exporter.storage.signing import BadSignature, verify
from tests.raids_helpers import (
    OTHER_AGENCY,
    OTHER_SP,
    SP,
    SP2,
    archive_members,
    artifact,
    exported,
    future,
    handle,
    jsonl,
    past,
    record,
    run_export,
    save,
)


@pytest.fixture
def rctx(ctx):
    """ctx with small pages (so paging is exercised) and no settle delay."""
    ctx.settings = ctx.settings.replace(export_page_size=3, export_settle_seconds=0, export_sitemap_max_urls=4)
    return ctx


def registry_fixture(ctx):
    save(
        ctx,
        record(1, access="open"),
        record(2, access="embargoed", expiry=future(), secret="S2"),
        record(3, access="embargoed", expiry=past(), secret="S3"),
        record(4, access="embargoed", secret="S4"),  # closed, no expiry
        record(5, sp=SP2, access="open"),
        record(6, sp=SP2, access="embargoed", expiry=future(), secret="S6"),
        record(7, access="open"),
        record(8, sp=OTHER_SP, agency=OTHER_AGENCY, access="open", secret="OTHER"),
    )
    with ctx.db.session() as s:
        registry.delete_raid(s, handle(7))


def test_public_export_publishes_open_raids_in_full_and_only_public_fields_of_closed_ones(rctx):
    registry_fixture(rctx)
    job = run_export(rctx, "export_public", {"agency": "https://ror.org/038sjwq14"})
    raids = exported(rctx, job)
    assert list(raids) == [handle(n) for n in (1, 2, 3, 4, 5, 6)]  # stable order, deleted 7 and other agency's 8 left out
    with rctx.db.session() as s:
        full = {n: registry.get_raid(s, handle(n)).record for n in (1, 3, 5)}
    for n in (1, 3, 5):  # open, and an embargo that has passed
        assert raids[handle(n)] == full[n]
    assert raids[handle(2)] == {
        "identifier": {"id": handle(2)},
        "metadata": {"created": 1_600_000_000},
        "access": {
            "type": {"id": "https://vocabularies.coar-repositories.org/access_rights/c_f1cf/", "schemaUri": "https://vocabularies.coar-repositories.org/access_rights/"},
            "statement": {"text": "This RAiD is embargoed", "language": {"id": "eng", "schemaUri": "https://www.iso.org/standard/74575.html"}},
            "embargoExpiry": future().isoformat(),
        },
    }
    assert "embargoExpiry" not in raids[handle(4)]["access"]
    blob = b"".join(archive_members(rctx, job).values())
    for secret in (b"S2", b"S4", b"S6", b"OTHER"):
        assert secret not in blob
    manifest = json.loads(rctx.storage.read_bytes(artifact(job, "manifest").key))
    assert manifest["counts"] == {"records": 6, "tombstones": 0, "by_access_type": {"open": 2, "embargoed": 4}, "in_full": 3, "redacted": 3}
    assert manifest["scope"] == {"type": "registration_agency", "id": "038sjwq14"} and manifest["mode"] == "full"
    assert all(a.public for a in job.artifacts)
    assert artifact(job, "archive").key.startswith("exports/public/038sjwq14/" + job.created_at.strftime("%Y%m%dT%H%M%SZ"))


def test_private_export_has_every_raid_of_the_service_point_in_full_and_nothing_else(rctx):
    registry_fixture(rctx)
    job = run_export(rctx, "export_private", {"service_point": SP2})
    raids = exported(rctx, job)
    with rctx.db.session() as s:
        assert raids == {handle(n): registry.get_raid(s, handle(n)).record for n in (5, 6)}
    assert b"S6" in archive_members(rctx, job)["raids.jsonl"]
    assert not any(a.public for a in job.artifacts)
    assert {a.name for a in job.artifacts} == {"archive", "manifest", "sha256sums", "ro-crate"}
    assert artifact(job, "archive").key.startswith(f"exports/private/{SP2}/")
    links = download_links(rctx, job.id, expires_in=600)
    parts = urlsplit(links["archive"])
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    key = artifact(job, "archive").key
    verify(rctx.settings.secret_key, key, q["filename"], q["signature"])
    with pytest.raises(BadSignature):
        verify(rctx.settings.secret_key, key.replace(str(SP2), str(SP)), q["filename"], q["signature"])


def _verify_with_tools(tmp_path, data: bytes, manifest: dict, fmt: str) -> None:
    archive = tmp_path / manifest["archive"]["name"]
    archive.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    if fmt == "zip":
        test = subprocess.run(["unzip", "-t", str(archive)], capture_output=True, text=True)
        assert test.returncode == 0 and "No errors detected" in test.stdout, test.stdout + test.stderr
        subprocess.run(["unzip", "-q", str(archive), "-d", str(out)], check=True)
    else:
        listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
        assert listing == [m["name"] for m in manifest["members"]] + ["manifest.json"]
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    sums = "".join(f"{m['sha256']}  {m['name']}\n" for m in manifest["members"])
    check = subprocess.run(["sha256sum", "-c", "-"], input=sums, cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    whole = subprocess.run(["sha256sum", "-c", "-"], input=f"{manifest['archive']['sha256']}  {archive.name}\n", cwd=tmp_path, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert archive.stat().st_size == manifest["archive"]["size"]
    inner = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k not in ("archive", "search_index")} == inner


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archive_verifies_with_unzip_or_tar_and_sha256sum(rctx, tmp_path, fmt):
    registry_fixture(rctx)
    job = run_export(rctx, "export_public", {"agency": "038sjwq14", "format": fmt})
    manifest = json.loads(rctx.storage.read_bytes(artifact(job, "manifest").key))
    assert [m["name"] for m in manifest["members"]] == ["raids.jsonl", "README.md", "ro-crate-metadata.json"]
    assert manifest["job_id"] == job.id and manifest["schema_version"] == 1 and manifest["format"] == fmt
    assert "watermark" not in manifest and manifest["window"]["changes_up_to"].endswith("Z") and manifest["generated_at"].endswith("Z")
    _verify_with_tools(tmp_path, rctx.storage.read_bytes(artifact(job, "archive").key), manifest, fmt)
    readme = archive_members(rctx, job)["README.md"].decode()
    assert "registration agency 038sjwq14" in readme and "sha256sum" in readme


def _crate(data: bytes) -> tuple[dict, dict[str, dict]]:
    """The root Dataset of an RO-Crate and its File entities by name, found as the spec says."""
    doc = json.loads(data)
    assert doc["@context"][0] == "https://w3id.org/ro/crate/1.2/context"
    graph = {e["@id"]: e for e in doc["@graph"]}
    descriptor = graph["ro-crate-metadata.json"]
    assert descriptor["conformsTo"] == {"@id": "https://w3id.org/ro/crate/1.2"}
    root = graph[descriptor["about"]["@id"]]
    assert root["@type"] == "Dataset" and root["name"] and root["description"] and root["datePublished"].endswith("Z")
    return root, {p["@id"]: graph[p["@id"]] for p in root["hasPart"]}


def test_sha256sums_and_ro_crates_describe_the_export_folder_and_the_archive(rctx, tmp_path):
    registry_fixture(rctx)
    job = run_export(rctx, "export_public", {"agency": "038sjwq14"})
    folder = tmp_path / "download"
    folder.mkdir()
    for name in ("archive", "manifest", "sha256sums", "ro-crate"):
        art = artifact(job, name)
        assert art.public and art.key.rsplit("/", 1)[0] == artifact(job, "archive").key.rsplit("/", 1)[0]
        (folder / art.filename).write_bytes(rctx.storage.read_bytes(art.key))
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.split() == ["raids.zip:", "OK", "manifest.json:", "OK"], check.stdout + check.stderr

    root, files = _crate((folder / "ro-crate-metadata.json").read_bytes())
    assert root["license"] == {"@id": "https://creativecommons.org/publicdomain/zero/1.0/"}
    assert list(files) == ["raids.zip", "manifest.json", "SHA256SUMS"]
    for name, entity in files.items():
        data = (folder / name).read_bytes()
        assert entity["@type"] == "File" and entity["contentSize"] == str(len(data)) and entity["sha256"] == hashlib.sha256(data).hexdigest()
    assert files["raids.zip"]["encodingFormat"] == "application/zip" and files["SHA256SUMS"]["encodingFormat"] == "text/plain"
    assert "redacted" in root["description"] and "open" in root["description"] and "latest/" in root["description"]

    members = archive_members(rctx, job)
    inner, parts = _crate(members["ro-crate-metadata.json"])
    assert list(parts) == ["raids.jsonl", "README.md"]
    for name, entity in parts.items():
        assert entity["sha256"] == hashlib.sha256(members[name]).hexdigest() and entity["contentSize"] == str(len(members[name]))
    assert parts["raids.jsonl"]["encodingFormat"] == "application/x-ndjson"
    manifest = json.loads(members["manifest.json"])
    listed = {m["name"]: m["sha256"] for m in manifest["members"]}
    assert listed["ro-crate-metadata.json"] == hashlib.sha256(members["ro-crate-metadata.json"]).hexdigest()
    assert set(members) == set(listed) | {"manifest.json"}


def test_a_private_export_crate_carries_no_licence(rctx):
    registry_fixture(rctx)
    job = run_export(rctx, "export_private", {"service_point": SP})
    root, files = _crate(rctx.storage.read_bytes(artifact(job, "ro-crate").key))
    assert "license" not in root and list(files) == ["raids.zip", "manifest.json", "SHA256SUMS"]
    assert not artifact(job, "sha256sums").public and not artifact(job, "ro-crate").public


def test_pages_by_keyset_never_offset_and_reports_progress(rctx, monkeypatch):
    save(rctx, *[record(n, access="open" if n % 2 else "embargoed", expiry=future()) for n in range(1, 12)])
    statements: list[str] = []
    offsets: list = []

    def capture(conn, cursor, statement, params, context, executemany):
        if "FROM raids" in statement:
            statements.append(statement)
            if "OFFSET" in statement.upper():  # SQLite's dialect always writes "LIMIT ? OFFSET ?"
                offsets.append(params[-1] if isinstance(params, (tuple, list)) else params)

    seen: list[tuple[int, int | None]] = []
    original = export_mod.JobRun.progress

    def record_progress(self, done, total=None, force=False):
        seen.append((done, total))
        return original(self, done, total, force)

    monkeypatch.setattr(export_mod.JobRun, "progress", record_progress)
    event.listen(rctx.db.engine, "before_cursor_execute", capture)
    try:
        job = run_export(rctx, "export_public", {"agency": "038sjwq14", "sitemaps": False})
    finally:
        event.remove(rctx.db.engine, "before_cursor_execute", capture)
    assert len(exported(rctx, job)) == 11
    pages = [s for s in statements if "ORDER BY raids.id" in s and "LIMIT" in s]
    assert len(pages) == 4  # 11 raids, 3 a page
    assert all(o == 0 for o in offsets)
    assert sum("raids.id >" in s for s in pages) == 3
    assert [d for d, _ in seen] == [0, 3, 6, 9, 11, 11] and {t for _, t in seen} == {11}
    done = jobs.get(rctx, job.id)
    assert done.progress_done == done.progress_total == 11


def test_every_run_writes_task_status_and_a_failure_keeps_the_previous_export(rctx, monkeypatch):
    registry_fixture(rctx)
    good = run_export(rctx, "export_public", {"agency": "038sjwq14"})
    before = {o.key: o.size for o in rctx.storage.list("exports/")}
    with rctx.db.session() as s:
        row = s.scalars(select(TaskStatus).where(TaskStatus.entity_id == "038sjwq14")).one()
        assert (row.entity_type, row.task_type, row.state, row.job_id, row.failure_count) == ("registration_agency", "export_public", "succeeded", good.id, 0)
    calls = {"n": 0}
    original = export_mod._record_line

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return original(*args)

    monkeypatch.setattr(export_mod, "_record_line", flaky)
    bad = run_export(rctx, "export_public", {"agency": "038sjwq14"}, expect="failed")
    assert bad.error == "OSError: disk full" and bad.artifacts == []
    assert {o.key: o.size for o in rctx.storage.list("exports/")} == before
    assert list(rctx.storage.list("_staging/")) == []
    for art in good.artifacts:
        assert rctx.storage.stat(art.key).size == art.size
    with rctx.db.session() as s:
        row = s.scalars(select(TaskStatus).where(TaskStatus.entity_id == "038sjwq14")).one()
        assert (row.state, row.error, row.job_id, row.failure_count) == ("failed", "OSError: disk full", bad.id, 1)
    monkeypatch.setattr(export_mod, "_record_line", original)
    nxt = run_export(rctx, "export_public", {"agency": "038sjwq14", "mode": "incremental"})
    assert nxt.result["follows"] == good.id


def test_export_of_an_unknown_scope_fails_and_says_why(rctx):
    job = run_export(rctx, "export_private", {"service_point": 42}, expect="failed")
    assert job.error == "NotFound: no service point 42"
    with rctx.db.session() as s:
        row = s.scalars(select(TaskStatus).where(TaskStatus.entity_id == "42")).one()
        assert row.state == "failed" and "no service point 42" in row.error
    with pytest.raises(NotFound):
        request_export(rctx, "export_public", {"agency": "02stey378"})


def test_params_are_canonical_and_validated(rctx):
    registry_fixture(rctx)
    job = request_export(rctx, "export_public", {"agency": "https://ror.org/038sjwq14/"}, requested_by="api")
    assert job.params == {"agency": "038sjwq14", "format": "zip", "mode": "full", "sitemaps": True}
    assert rctx.sent == [("exporter.export_public", job.id, "exports")]
    job = request_export(rctx, "export_private", {"service_point": str(SP), "mode": "incremental", "format": "tar.gz"})
    assert job.params == {"service_point": SP, "format": "tar.gz", "mode": "incremental"}
    assert rctx.sent[-1] == ("exporter.export_private", job.id, "exports")
    for kind, params, field in [
        ("export_public", {}, "agency"),
        ("export_public", {"agency": "038sjwq14", "mode": "sometimes"}, "mode"),
        ("export_private", {"service_point": 1, "format": "rar"}, "format"),
        ("export_private", {"service_point": -1}, "service_point"),
        ("export_private", {"service_point": 1, "agency": "x"}, "agency"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            jobs.submit(rctx, kind, params)
        assert err.value.field == field


def test_estimate_size_is_in_the_right_range(rctx):
    from exporter.raids.generator import generate

    generate(rctx, 300, service_points=[SP], seed=3)
    estimate = estimate_size(rctx, "export_private", {"service_point": SP})
    job = run_export(rctx, "export_private", {"service_point": SP})
    actual = sum(a.size for a in job.artifacts)
    assert actual / 3 < estimate < actual * 3
    public = estimate_size(rctx, "export_public", {"agency": "038sjwq14"})
    job = run_export(rctx, "export_public", {"agency": "038sjwq14"})
    actual = sum(a.size for a in job.artifacts)
    assert actual / 3 < public < actual * 3


def test_private_export_on_s3_is_reached_through_an_expiring_presigned_link(pg_ctx, s3_settings):
    from exporter.context import Context

    ctx = Context(s3_settings.replace(database_url=pg_ctx.settings.database_url, export_settle_seconds=0))
    ctx.enqueue = lambda *a: None
    try:
        save(ctx, record(1, sp=SP, access="embargoed", expiry=future(), secret="CLOSED"))
        job = run_export(ctx, "export_private", {"service_point": SP})
        links = download_links(ctx, job.id, expires_in=120)
        assert "X-Amz-Expires=120" in links["archive"] and "X-Amz-Signature=" in links["archive"]
        body = requests.get(links["archive"], timeout=10).content
        import hashlib

        assert hashlib.sha256(body).hexdigest() == artifact(job, "archive").sha256
        assert not artifact(job, "archive").public
    finally:
        ctx.close()


def test_cli_runs_exports_in_process_with_progress_or_enqueues_them(rctx, monkeypatch):
    from cli.main import main

    registry_fixture(rctx)
    result = CliRunner().invoke(main, ["export", "public", "--agency", "038sjwq14"])
    assert result.exit_code == 0, result.output
    assert "succeeded: full export, 6 raids, 0 tombstones" in result.output and "archive: exports/public/038sjwq14/" in result.output
    result = CliRunner().invoke(main, ["export", "public", "--agency", "038sjwq14", "--incremental", "--format", "tar.gz"])
    assert result.exit_code == 0 and "succeeded: incremental export, 0 raids" in result.output and ".tar.gz" in result.output
    result = CliRunner().invoke(main, ["export", "private", "--service-point", str(SP2)])
    assert result.exit_code == 0 and "archive link (expires in" in result.output and "signature=" in result.output
    collect = rctx.enqueue
    import workers.app  # installs the Celery dispatcher on import; keep collecting instead

    rctx.enqueue = collect
    monkeypatch.setattr(workers.app, "install_dispatcher", lambda: None)
    result = CliRunner().invoke(main, ["export", "private", "--service-point", str(SP2), "--enqueue"])
    assert result.exit_code == 0 and "enqueued" in result.output
    assert rctx.sent[-1][0] == "exporter.export_private"
    result = CliRunner().invoke(main, ["export", "public", "--agency", "05unknown1"])
    assert result.exit_code == 1 and "no registration agency 05unknown1" in result.output


def test_celery_tasks_and_the_nightly_beat_entry(rctx):
    collect = rctx.enqueue
    import celeryconfig
    from workers import tasks
    from workers.app import celery_app

    rctx.enqueue = collect

    assert celery_app.tasks["exporter.export_public"].queue == "exports"
    assert celery_app.tasks["exporter.export_private"].queue == "exports"
    entry = celeryconfig.beat_schedule["export-public-nightly"]
    assert entry["task"] == "exporter.export_public_nightly" and entry["options"] == {"queue": "exports"}
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {0}
    registry_fixture(rctx)
    submitted = tasks.export_public_nightly.run()
    assert sorted(submitted) == ["02stey378", "038sjwq14"]
    assert sorted(t for t, _, _ in rctx.sent) == ["exporter.export_public"] * 2
    assert {jobs.get(rctx, j).requested_by for j in submitted.values()} == {"beat"}


def test_zip_is_streamed_with_data_descriptors(rctx):
    registry_fixture(rctx)
    job = run_export(rctx, "export_public", {"agency": "038sjwq14", "sitemaps": False})
    path = rctx.storage.path(artifact(job, "archive").key)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["raids.jsonl", "README.md", "ro-crate-metadata.json", "manifest.json"]
    assert all(i.flag_bits & 0x08 for i in infos)  # sizes after the data: written without seeking
    assert jsonl(archive_members(rctx, job)["raids.jsonl"])
