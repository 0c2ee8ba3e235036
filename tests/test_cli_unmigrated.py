"""The CLI on a database that is not (fully) migrated, its quiet default, and production settings without a secret."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from exporter import migrate

from .conftest import free_port
from .workers import ROOT


def run(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({"EXPORTER_VAR_DIR": str(folder / "var"), "PYTHONPATH": str(ROOT)}, **extra)
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("argv", [
    ["archive", "http://127.0.0.1:9/data.csv"],
    ["jobs", "list"],
    ["tokens", "list"],
    ["demo"],
])
def test_a_command_on_a_new_folder_says_to_run_db_upgrade(tmp_path, argv):
    one_line_error(run(tmp_path, *argv), "not migrated", "exporter db upgrade")


def test_a_database_missing_a_head_stops_every_command_until_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'exporter.db'}"
    (tmp_path / "var").mkdir()
    heads = sorted(migrate.missing_heads(url))
    migrate.upgrade(url, heads[0])
    assert migrate.missing_heads(url) == set(heads[1:])
    one_line_error(run(tmp_path, "jobs", "list"), heads[-1], "exporter db upgrade")
    assert run(tmp_path, "db", "upgrade").returncode == 0
    listed = run(tmp_path, "jobs", "list")
    assert (listed.returncode, listed.stdout.strip()) == (0, "no jobs")


def test_the_cli_is_quiet_by_default_and_verbose_on_request(tmp_path):
    quiet = run(tmp_path, "db", "upgrade")
    assert quiet.returncode == 0 and quiet.stdout.startswith("database at revision")
    assert " INFO " not in quiet.stderr, quiet.stderr
    (tmp_path / "var" / "exporter.db").unlink()
    verbose = run(tmp_path, "-v", "db", "upgrade")
    assert verbose.returncode == 0 and " INFO " in verbose.stderr and "Running upgrade" in verbose.stderr
    assert "setup plugin" not in verbose.stderr  # alembic's nine lines of its own set-up on every command
    (tmp_path / "var" / "exporter.db").unlink()
    by_setting = run(tmp_path, "db", "upgrade", EXPORTER_LOG_LEVEL="INFO")
    assert "Running upgrade" in by_setting.stderr
    one_line_error(run(tmp_path, "jobs", "show", "no-such-job"), "no-such-job")
    one_line_error(run(tmp_path, "raids", "generate", "5", "--agency", "bad!!"), "'bad!!' is not a ROR id")


@pytest.mark.parametrize("command", [["worker"], ["web"], ["beat"], ["up", "--no-migrate"]])
@pytest.mark.parametrize("production", [{"EXPORTER_ENV": "production"}, {"EXPORTER_BROKER_URL": "redis://127.0.0.1:6379/0"}])
def test_production_settings_without_a_secret_refuse_to_start(tmp_path, command, production):
    one_line_error(run(tmp_path, *command, **production), "EXPORTER_SECRET_KEY is not set")
    assert not (tmp_path / "var" / "secret_key").exists()


def test_a_database_migrated_by_a_newer_version_or_a_revision_no_script_names_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'exporter.db'}"
    (tmp_path / "var").mkdir()
    one_line_error(run(tmp_path, "db", "upgrade", "--revision", "no_such_rev"), "no_such_rev")
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('future_0001')"))
    engine.dispose()
    for argv in (["db", "upgrade"], ["up", "-c", "1"], ["jobs", "list"]):
        one_line_error(run(tmp_path, *argv), "future_0001", "newer version")


def test_a_sync_from_a_server_that_is_down_is_one_line_without_urllib3s_retry_warnings(tmp_path):
    source = f"http://127.0.0.1:{free_port()}/dumps/038sjwq14/"
    failed = run(tmp_path, "sync", source, str(tmp_path / "dest"))
    one_line_error(failed, "LATEST.json", "Connection refused")
    assert "Retrying" not in failed.stderr
    verbose = run(tmp_path, "-v", "sync", source, str(tmp_path / "dest"))
    assert "Retrying" in verbose.stderr and verbose.returncode != 0


@pytest.mark.parametrize("setting", ["EXPORTER_WEB_PORT", "EXPORTER_FLOWER_URL"])
def test_up_on_a_port_something_listens_on_is_one_line_and_starts_nothing(tmp_path, setting):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"EXPORTER_WEB_PORT": str(free_port()), "EXPORTER_FLOWER_URL": f"http://127.0.0.1:{free_port()}"}
        ports[setting] = str(port) if setting == "EXPORTER_WEB_PORT" else f"http://127.0.0.1:{port}"
        result = run(tmp_path, "up", "-c", "1", **ports)
    one_line_error(result, f"127.0.0.1:{port} is in use", setting)
    assert not (tmp_path / "var" / "exporter.db").exists()  # stopped before migrating or starting anything


def run_in_a_terminal(folder: Path, *args: str) -> tuple[int, str]:
    """The command with a terminal for stdout and stderr, as a person runs it (click draws bars only on a tty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({"EXPORTER_VAR_DIR": str(folder / "var"), "PYTHONPATH": str(ROOT), "COLUMNS": "120"})
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_progress_bars_and_log_lines_never_share_a_line(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "raids", "generate", "40", "--agency", "038sjwq14").returncode == 0
    code, quiet = run_in_a_terminal(tmp_path, "export", "public", "--agency", "038sjwq14")
    assert code == 0 and "[####" in quiet and " INFO " not in quiet, quiet
    code, verbose = run_in_a_terminal(tmp_path, "-v", "export", "public", "--agency", "038sjwq14")
    assert code == 0 and " INFO " in verbose, verbose
    segments = re.split(r"[\r\n]+", verbose)
    assert not [s for s in segments if "export_public" in s and "[" in s and " INFO " in s], verbose
    assert "[####" not in verbose  # with the logs on, the bar steps aside


def test_a_job_run_here_that_fails_as_expected_prints_no_traceback(tmp_path):
    """A refused address is an expected failure: the job's error and one warning, not the runner's traceback."""
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "portals", "add", "local", f"http://127.0.0.1:{free_port()}/").returncode == 0
    swept = run(tmp_path, "portals", "sweep", "local", "--wait")
    assert swept.returncode == 1 and "Traceback" not in swept.stderr, swept.stderr
    assert "refusing to connect to 127.0.0.1" in swept.stderr  # jobs.fail's warning, one line
    assert '"status": "failed"' in swept.stdout
