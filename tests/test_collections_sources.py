"""A collection's source as an attacker or a busy science platform leaves it: links out of the folder
(/etc/passwd, /etc), a link or a FIFO swapped in after the poll, a file rewritten between the poll
and the copy (folder and S3), an S3 source without credentials or bucket, and a source that
overlaps Exporter's own storage. On both databases; S3 through moto's server."""

from __future__ import annotations

import hashlib
import os

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import main
from exporter.collections import batches, projects, views
from exporter.collections.models import CollectionSourceFile
from exporter.collections.sources import FolderSource
from exporter.errors import InvalidRequest, NotFound

from .collections_helpers import make_fits, make_small_png, run_sent


def _settings(ctx, tmp_path, **extra):
    ctx.settings = ctx.settings.replace(collections_source_roots=str(tmp_path / "sources"), collections_settle_seconds=0, **extra)
    ctx.__dict__.pop("storage", None)


def _folder(tmp_path, name="zoo"):
    folder = tmp_path / "sources" / name
    folder.mkdir(parents=True)
    return folder


def _names(ctx, project):
    with ctx.db.session() as s:
        pid = projects.project(ctx, project).id
        return sorted(s.scalars(select(CollectionSourceFile.name).where(CollectionSourceFile.project_id == pid)))


def _quarantined(ctx, batch_id) -> list[bytes]:
    return [ctx.storage.read_bytes(f.quarantine_key) for f in batches_files(ctx, batch_id) if f.quarantine_key]


def batches_files(ctx, batch_id):
    from exporter.collections.models import CollectionFile

    with ctx.db.session() as s:
        return list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == batch_id).order_by(CollectionFile.id)))


def test_a_link_out_of_the_source_is_never_listed_nor_read(ctx, tmp_path):
    _settings(ctx, tmp_path)
    folder = _folder(tmp_path)
    make_small_png(folder / "real.png", 1)
    (folder / "inside.png").symlink_to(folder / "real.png")  # a link to a file of the folder is read
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "etc").symlink_to("/etc")
    (folder / "sub").mkdir()
    (folder / "sub" / "up.fits").symlink_to("../../../../../../etc/hostname")
    projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
    polled = batches.poll_project(ctx, "zoo")
    assert _names(ctx, "zoo") == ["inside.png", "real.png"]  # not even the size of /etc/passwd is recorded
    src = FolderSource(str(folder))
    for name in ("passwd.png", "../../../../etc/passwd", "sub/up.fits", "etc/passwd"):
        with pytest.raises(NotFound):
            src.open(name)
    run_sent(ctx)
    assert views.get_batch(ctx, polled.batch_id)["counts"]["converted"] == 2

    # swapped after the poll listed them: a link to /etc/passwd, a folder turned into a link, a FIFO
    make_small_png(folder / "later.png", 2)
    (folder / "deep").mkdir()
    make_small_png(folder / "deep" / "x.png", 3)
    make_small_png(folder / "pipe.png", 4)
    second = batches.poll_project(ctx, "zoo")
    assert second.taken == 3
    (folder / "later.png").unlink()
    (folder / "later.png").symlink_to("/etc/passwd")
    os.rename(folder / "deep", folder / "deep-moved")
    (folder / "deep").symlink_to("/etc")
    (folder / "pipe.png").unlink()
    os.mkfifo(folder / "pipe.png")  # opening it for reading would wait for a writer forever
    assert run_sent(ctx) == ["succeeded"]
    view = views.get_batch(ctx, second.batch_id)
    assert view["counts"]["retrieved"] == 0 and view["counts"]["refused"] == 3
    assert all("gone from the source" in r["reason"] for r in view["refusedFiles"]), view["refusedFiles"]
    assert _quarantined(ctx, second.batch_id) == []


def test_a_file_rewritten_between_poll_and_copy_waits_for_the_next_poll(ctx, tmp_path):
    _settings(ctx, tmp_path)
    folder = _folder(tmp_path)
    make_fits(folder / "m51.fits", obj="M51")
    projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
    first = batches.poll_project(ctx, "zoo")
    new_bytes = make_fits(tmp_path / "v2.fits", obj="M51", shape=(200, 300), seed=9).read_bytes()
    (folder / "m51.fits").write_bytes(new_bytes)  # the platform writes a new version over it
    run_sent(ctx)
    [refused] = views.get_batch(ctx, first.batch_id)["refusedFiles"]
    assert "changed after the poll saw it" in refused["reason"]
    assert _quarantined(ctx, first.batch_id) == []

    second = batches.poll_project(ctx, "zoo")
    assert (second.found, second.taken) == (1, 1)
    run_sent(ctx)
    [f] = views.get_batch(ctx, second.batch_id)["files"]
    assert f["converted"] and f["sha256"] == hashlib.sha256(new_bytes).hexdigest()


def test_an_s3_object_rewritten_between_poll_and_copy_waits_for_the_next_poll(ctx, tmp_path, moto_server):
    import boto3

    _settings(ctx, tmp_path, s3_endpoint_url=moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="platform-rewrite")
    s3.put_object(Bucket="platform-rewrite", Key="pat/one.fits", Body=make_fits(tmp_path / "one.fits").read_bytes())
    projects.add_project(ctx, "s3-rewrite", "s3://platform-rewrite/pat", "pi@example.org")
    first = batches.poll_project(ctx, "s3-rewrite")
    new_bytes = make_fits(tmp_path / "two.fits", seed=4).read_bytes()
    s3.put_object(Bucket="platform-rewrite", Key="pat/one.fits", Body=new_bytes)
    run_sent(ctx)
    [refused] = views.get_batch(ctx, first.batch_id)["refusedFiles"]
    assert "changed after the poll saw it" in refused["reason"]
    second = batches.poll_project(ctx, "s3-rewrite")
    run_sent(ctx)
    [f] = views.get_batch(ctx, second.batch_id)["files"]
    assert f["converted"] and f["sha256"] == hashlib.sha256(new_bytes).hexdigest()


def test_an_s3_source_that_cannot_be_read_says_why_in_one_line(ctx, tmp_path, moto_server, monkeypatch):
    import boto3

    _settings(ctx, tmp_path, s3_endpoint_url=moto_server)
    projects.add_project(ctx, "no-bucket", "s3://no-such-bucket-here/pat", "pi@example.org")
    polled = batches.poll_project(ctx, "no-bucket")
    assert polled.skipped == "cannot read s3://no-such-bucket-here/pat: S3 answered NoSuchBucket: The specified bucket does not exist"
    assert projects.project(ctx, "no-bucket").last_poll_error == polled.skipped

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role asked for at 169.254.169.254
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3's session keeps the credentials it found before
    result = CliRunner().invoke(main, ["collections", "poll", "no-bucket"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["no-bucket: not polled: cannot read s3://no-such-bucket-here/pat: no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role)"]


def test_a_source_that_overlaps_exporters_own_storage_is_refused(ctx, tmp_path):
    roots = tmp_path / "sources"
    _settings(ctx, tmp_path, storage_url=f"file://{roots}/storage")
    (roots / "pat").mkdir(parents=True)
    for source in (str(roots), str(roots / "storage"), str(roots / "storage" / "quarantine")):
        with pytest.raises(InvalidRequest, match="overlaps Exporter's own storage") as exc:
            projects.add_project(ctx, "zoo", source, "pi@example.org")
        assert exc.value.field == "source"
    projects.add_project(ctx, "zoo", str(roots / "pat"), "pi@example.org")

    ctx.settings = ctx.settings.replace(storage_url="s3://exporter-store/exp")
    for source in ("s3://exporter-store", "s3://exporter-store/exp", "s3://exporter-store/exp/quarantine/collections"):
        with pytest.raises(InvalidRequest, match="overlaps Exporter's own storage"):
            projects.add_project(ctx, "s3-zoo", source, "pi@example.org")
    projects.add_project(ctx, "s3-zoo", "s3://exporter-store/platform/pat", "pi@example.org")  # the same bucket, another prefix
    projects.add_project(ctx, "s3-other", "s3://platform/exp", "pi@example.org")


def test_a_folder_that_does_not_exist_is_refused_in_one_line(ctx, tmp_path):
    _settings(ctx, tmp_path)
    _folder(tmp_path, "zoo")
    typo = tmp_path / "sources" / "zo"
    result = CliRunner().invoke(main, ["collections", "add", "zoo", "--source", str(typo), "--owner", "pi@example.org"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: source folder {typo} does not exist or is not a folder; create it (or check the path) and add the project again"]
    (tmp_path / "sources" / "file.fits").write_text("x")
    with pytest.raises(InvalidRequest, match="is not a folder") as exc:
        projects.add_project(ctx, "zoo", str(tmp_path / "sources" / "file.fits"), "pi@example.org")
    assert exc.value.field == "source"
    assert projects.list_projects(ctx) == []


def test_a_source_folder_turned_into_a_link_is_not_read(ctx, tmp_path):
    """The owner may replace the folder itself by a link (to /etc, or to Exporter's own files): neither a poll nor a running batch follows it."""
    _settings(ctx, tmp_path)
    folder = _folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = b"secret-key-of-the-server"
    (elsewhere / "a.png").write_bytes(secret)
    make_small_png(folder / "a.png", 1)
    projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
    polled = batches.poll_project(ctx, "zoo")
    os.rename(folder, tmp_path / "sources" / "zoo-was")
    folder.symlink_to(elsewhere)  # between the poll and the copy
    assert run_sent(ctx) == ["failed"]
    view = views.get_batch(ctx, polled.batch_id)
    assert view["state"] == "failed" and "is now a link" in view["error"]
    assert _quarantined(ctx, polled.batch_id) == []
    assert all(secret not in ctx.storage.read_bytes(o.key) for o in ctx.storage.list("quarantine/"))

    (elsewhere / "b.png").write_bytes(secret)
    again = batches.poll_project(ctx, "zoo")
    assert again.batch_id is None and "is now a link" in again.skipped
    assert _names(ctx, "zoo") == ["a.png"]
