"""docker-compose.yml: every Exporter service runs a command whose entry point exists."""

from __future__ import annotations

import importlib
import re

import click
import pytest
import yaml

from cli.main import flower_argv
from cli.main import main as cli
from exporter.config import is_production, load_settings, production_secret_problem


def load(project_root):
    return yaml.safe_load((project_root / "docker-compose.yml").read_text())


def resolve_exporter_command(argv: list[str]) -> click.Command:
    command: click.Command = cli
    ctx = click.Context(cli)
    for word in argv[1:]:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`{' '.join(argv)}`: exporter has no command {word!r}"
        command = sub
    return command


def check_options(command: click.Command, argv: list[str]) -> None:
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for word in argv:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"`{' '.join(argv)}`: {command.name} has no option {word}"


def test_scaled_out_services_are_all_there(project_root):
    services = load(project_root)["services"]
    assert {"redis", "postgres", "minio", "web", "worker", "beat", "flower"} <= set(services)
    env = services["web"]["environment"]
    assert env["EXPORTER_BROKER_URL"].startswith("redis://")
    assert env["EXPORTER_DATABASE_URL"].startswith("postgresql")
    assert env["EXPORTER_STORAGE_URL"].startswith("s3://")


def test_every_command_points_at_an_entry_point_that_exists(project_root):
    services = load(project_root)["services"]
    checked = 0
    for name, svc in services.items():
        argv = svc.get("command")
        if not argv or svc.get("image", "").split(":")[0] != "exporter":
            continue
        program = argv[0]
        if program == "exporter":
            check_options(resolve_exporter_command(argv), argv)
        elif program == "gunicorn":
            module, _, call = argv[-1].partition(":")
            factory = getattr(importlib.import_module(module), call.removesuffix("()"))
            assert factory().url_map is not None
            importlib.import_module("gunicorn.app.wsgiapp")
        elif program == "celery":
            module, _, attr = argv[argv.index("-A") + 1].partition(":")
            app = getattr(importlib.import_module(module), attr)
            assert app.main == "exporter"
            if "flower" in argv:
                importlib.import_module("flower")
        else:
            raise AssertionError(f"service {name}: unknown program {program!r}")
        checked += 1
    assert checked >= 5


SECRET_WORDS = ("SECRET", "PASSWORD", "BASIC_AUTH")
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class Missing(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: `${VAR}`, `${VAR:-default}`, `${VAR:?message}`, `$$`."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        given = env.get(name)
        if op in (":?", "?") and not given:
            raise Missing(f"{name}: {arg}")
        if op in (":-", "-") and not given:
            return arg
        return given or ""

    return VARIABLE.sub(one, value)


def environments(project_root) -> dict[str, dict[str, str]]:
    return {name: svc.get("environment") or {} for name, svc in load(project_root)["services"].items()}


def test_no_secret_has_a_default_every_one_is_required(project_root):
    checked = 0
    for env in environments(project_root).values():
        for key, value in env.items():
            value = str(value)
            if any(w in key for w in SECRET_WORDS) or "@" in value:
                with pytest.raises(Missing):
                    interpolate(value, {})
                checked += 1
    assert checked >= 8
    text = (project_root / "docker-compose.yml").read_text()
    assert "change-me" not in text and "exporter-secret" not in text


def test_compose_settings_are_production_and_refuse_to_start_without_a_secret(project_root):
    given = {"EXPORTER_SECRET_KEY": "k" * 48, "EXPORTER_FLOWER_BASIC_AUTH": "operator:a-long-password", "POSTGRES_PASSWORD": "pw", "MINIO_ROOT_PASSWORD": "minio-password"}
    env = {k: interpolate(str(v), given) for k, v in environments(project_root)["worker"].items()}
    assert is_production(env)
    assert production_secret_problem(env) is None
    settings = load_settings(env | {"EXPORTER_VAR_DIR": "/nonexistent-var"})
    assert settings.flower_basic_auth == "operator:a-long-password"
    without = {k: v for k, v in env.items() if k != "EXPORTER_SECRET_KEY"}
    assert "EXPORTER_SECRET_KEY is not set" in production_secret_problem(without)


def test_flower_runs_behind_basic_auth_from_the_required_setting(project_root):
    flower = load(project_root)["services"]["flower"]
    assert flower["command"][:2] == ["exporter", "flower"]
    assert "--basic-auth" not in " ".join(flower["command"]), "credentials belong in the environment, not in ps"
    assert "EXPORTER_FLOWER_BASIC_AUTH" in flower["environment"]
    settings = load_settings({"EXPORTER_FLOWER_BASIC_AUTH": "operator:a-long-password", "EXPORTER_VAR_DIR": "/nonexistent-var", "EXPORTER_SECRET_KEY": "k" * 48})
    argv, env = flower_argv(settings, "0.0.0.0")
    assert env == {"FLOWER_BASIC_AUTH": "operator:a-long-password"}
    assert "--address=0.0.0.0" in argv and "--port=5555" in argv


def test_the_services_start_through_exporter_so_its_checks_run_first(project_root):
    """`exporter web|worker|beat|flower` refuse production settings without a secret, or an unmigrated database, in one line."""
    services = load(project_root)["services"]
    for name in ("web", "worker", "beat", "flower"):
        assert services[name]["command"][:2] == ["exporter", name], services[name]["command"]


def test_every_long_running_service_has_a_health_check(project_root):
    services = load(project_root)["services"]
    one_shot = {"migrate", "createbucket"}
    for name, svc in services.items():
        if name in one_shot:
            continue
        assert svc.get("healthcheck", {}).get("test"), f"service {name} has no health check"
    for name in ("web", "flower"):
        probe = services[name]["healthcheck"]["test"]
        assert probe[:2] == ["CMD", "python"] and "urllib.request" in probe[-1]


@pytest.mark.parametrize("entry", ["web", "celery"])
def test_service_entry_points_outside_the_cli_refuse_production_settings_without_a_secret(project_root, tmp_path, entry):
    """docker-compose runs the web as `gunicorn web:create_app()` and Flower/workers load
    `workers.app`: neither goes through the CLI's check, so each entry point checks itself."""
    import os
    import subprocess
    import sys

    bin_dir = os.path.dirname(sys.executable)
    argv = {"web": [os.path.join(bin_dir, "gunicorn"), "--check-config", "web:create_app()"], "celery": [os.path.join(bin_dir, "celery"), "-A", "workers.app", "report"]}[entry]
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    base |= {
        "PYTHONPATH": str(project_root), "EXPORTER_VAR_DIR": str(tmp_path / "var"),
        "EXPORTER_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test", "EXPORTER_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    refused = subprocess.run(argv, env=base, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "EXPORTER_SECRET_KEY is not set" in refused.stdout + refused.stderr
    started = subprocess.run(argv, env=base | {"EXPORTER_SECRET_KEY": "k" * 48}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
