"""`exporter collections ...` through click, on both databases: add (the grant printed once), list,
show, poll --wait, approve, decline, rights, revoke-grant; bad input is one line and a non-zero exit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import main
from exporter.collections import projects, views

from .collections_helpers import make_fits, make_small_png, run_sent


def _run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, (args, result.exit_code, result.output)
    return result


def test_the_collections_commands(ctx, tmp_path):
    ctx.settings = ctx.settings.replace(collections_source_roots=str(tmp_path / "sources"), collections_settle_seconds=0)
    folder = tmp_path / "sources" / "zoo"
    folder.mkdir(parents=True)
    make_fits(folder / "a.fits")
    make_small_png(folder / "b.png", 1)
    (folder / "c.txt").write_text("text")

    added = _run("collections", "add", "zoo", "--source", str(folder), "--owner", "pi@example.org", "--owner-name", "Pat", "--zooniverse-project", "1234")
    grant = added.stdout.strip()
    assert grant.startswith("cg_") and projects.check_grant(ctx, "zoo", grant)
    assert "zoo" in _run("collections", "list").output
    assert "already" in _run("collections", "add", "zoo", "--source", str(folder), "--owner", "pi@example.org", ok=False).output

    polled = _run("collections", "poll", "zoo", "--wait").output
    assert "3 new file(s); batch" in polled and "succeeded" in polled
    [batch] = views.list_batches(ctx, project="zoo")
    assert batch["state"] == "awaiting_approval" and batch["counts"]["refused"] == 1
    shown = json.loads(_run("collections", "show", "zoo", "--json").output)
    assert shown["batches"][0]["id"] == batch["id"] and shown["dataRightsApproved"] is False
    detail = json.loads(_run("collections", "batch", str(batch["id"])).output)
    assert detail["refusedFiles"][0]["sourceName"] == "c.txt"

    out = _run("collections", "decline", str(batch["id"]), "--by", "alice", "--reason", "", ok=False).output
    assert "reason" in out and "Traceback" not in out
    assert "approved by alice" in _run("collections", "approve", str(batch["id"]), "--by", "alice", "--note", "fine").output
    run_sent(ctx)
    assert views.get_batch(ctx, batch["id"])["state"] == "published"
    out = _run("collections", "decline", str(batch["id"]), "--by", "bob", "--reason", "late", ok=False).output
    assert "is published" in out and len(out.strip().splitlines()) == 1

    assert "up to 10000" in _run("collections", "rights", "zoo", "--approved").output
    assert "grant revoked" in _run("collections", "revoke-grant", "zoo").output
    make_small_png(folder / "d.png", 2)
    assert "revoked" in _run("collections", "poll", "zoo", ok=False).output
    assert "no collection project 'nope'" in _run("collections", "show", "nope", ok=False).output
    assert "not a batch id" in _run("collections", "approve", "x1", "--by", "a", ok=False).output
    assert "outside the folders" in _run("collections", "add", "etc", "--source", "/etc", "--owner", "a@b.org", ok=False).output


def test_astropy_loads_in_workers_only():
    """The CLI and the web app (with every job kind loaded) never import astropy; the task module does, so prefork children share it."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from exporter.kinds import load_all; load_all()\n"
        "import cli.main, cli.collections, web; web.create_app()\n"
        "print('astropy' in sys.modules)\n"
        "import workers.tasks\n"
        "print('astropy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", "collections", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "astropy" not in helped.stderr
