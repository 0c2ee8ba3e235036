"""docker-compose.yml: every Exporter service runs a command whose entry point exists."""

from __future__ import annotations

import importlib

import click
import yaml

from exporter.cli import main as cli


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
