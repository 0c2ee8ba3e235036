"""Settings: embedded defaults need no server; a bad value stops start-up naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.config import load_settings, settings_markdown
from exporter.errors import ConfigError


def test_embedded_defaults_need_no_server(tmp_path):
    s = load_settings({"EXPORTER_VAR_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path}/exporter.db"
    assert s.storage_url == f"file://{tmp_path}/storage"
    assert s.broker_url == "filesystem://" and s.is_embedded_broker
    assert len(s.secret_key) >= 32
    assert load_settings({"EXPORTER_VAR_DIR": str(tmp_path)}).secret_key == s.secret_key  # kept, not regenerated


def test_scaled_out_settings_switch_backends(tmp_path):
    s = load_settings({
        "EXPORTER_VAR_DIR": str(tmp_path),
        "EXPORTER_DATABASE_URL": "postgresql://exporter@db/exporter",
        "EXPORTER_BROKER_URL": "redis://redis:6379/0",
        "EXPORTER_STORAGE_URL": "s3://exports/prod",
        "EXPORTER_S3_ENDPOINT_URL": "http://minio:9000",
    })
    assert s.database_url == "postgresql+psycopg://exporter@db/exporter"
    assert not s.is_embedded_broker
    assert s.storage_url == "s3://exports/prod"


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("DATABASE_URL", "not a url", "EXPORTER_DATABASE_URL"),
        ("DATABASE_URL", "mysql://x@y/z", "EXPORTER_DATABASE_URL"),
        ("STORAGE_URL", "ftp://host/x", "EXPORTER_STORAGE_URL"),
        ("STORAGE_URL", "s3://", "EXPORTER_STORAGE_URL"),
        ("BROKER_URL", "kafka://x", "EXPORTER_BROKER_URL"),
        ("WEB_PORT", "eighty", "EXPORTER_WEB_PORT"),
        ("HEARTBEAT_SECONDS", "-1", "EXPORTER_HEARTBEAT_SECONDS"),
        ("LOG_LEVEL", "LOUD", "EXPORTER_LOG_LEVEL"),
        ("PUBLIC_URL", "example.org", "EXPORTER_PUBLIC_URL"),
        ("SECRET_KEY", "short", "EXPORTER_SECRET_KEY"),
        ("TASK_TIME_LIMIT", "10", "EXPORTER_TASK_TIME_LIMIT"),
        ("EXPORT_NIGHTLY_HOUR", "24", "EXPORTER_EXPORT_NIGHTLY_HOUR"),
    ],
)
def test_bad_value_names_the_setting(tmp_path, name, value, words):
    with pytest.raises(ConfigError) as err:
        load_settings({"EXPORTER_VAR_DIR": str(tmp_path), f"EXPORTER_{name}": value})
    assert words in str(err.value)


def test_cli_stops_with_the_setting_name_and_non_zero_exit(tmp_path):
    env = {**os.environ, "EXPORTER_VAR_DIR": str(tmp_path), "EXPORTER_STORAGE_URL": "gopher://old"}
    out = subprocess.run([sys.executable, "-m", "cli", "jobs", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "EXPORTER_STORAGE_URL" in out.stderr and "Traceback" not in out.stderr


def test_readme_documents_every_setting(project_root):
    readme = (project_root / "README.md").read_text()
    assert settings_markdown() in readme, "README's settings table is stale: paste `exporter config --markdown`"


def test_the_public_url_follows_the_web_port_unless_it_is_set(tmp_path):
    base = {"EXPORTER_VAR_DIR": str(tmp_path)}
    assert load_settings(base).public_url == "http://127.0.0.1:8000"
    moved = load_settings(base | {"EXPORTER_WEB_PORT": "8123", "EXPORTER_WEB_HOST": "localhost"})
    assert moved.public_url == "http://localhost:8123"  # download links point where `exporter up` serves
    assert load_settings(base | {"EXPORTER_WEB_HOST": "0.0.0.0"}).public_url == "http://127.0.0.1:8000"  # not a browsable address
    behind_a_proxy = load_settings(base | {"EXPORTER_WEB_PORT": "8123", "EXPORTER_PUBLIC_URL": "https://exporter.example.org"})
    assert behind_a_proxy.public_url == "https://exporter.example.org"
