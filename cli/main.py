"""The `exporter` command line: the root group and the engine's commands (db, config, check,
demo, jobs, and the services: web, worker, beat, Flower, and `up` for all of them at once)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import click

from exporter.errors import ConfigError, ExporterError
from exporter.kinds import QUEUES

# Modules whose click command groups join `exporter`, as (module, attribute) pairs.
COMMAND_MODULES: list[tuple[str, str]] = [
    ("cli.archiver", "archive"),
    ("cli.archiver", "portals"),
    ("cli.archiver", "archives"),
    ("cli.tokens", "tokens"),
    ("cli.raids", "raids"),
    ("cli.raids", "export"),
    ("cli.tiles", "layers"),
    ("cli.publish", "publish"),
    ("cli.search", "search"),
    ("cli.dumps", "dump"),
    ("cli.dumps", "sync"),
    ("cli.collections", "collections"),
]


def context():
    from exporter.context import get_context

    return get_context()


class ExporterGroup(click.Group):
    """Turns expected errors into a one-line message and a non-zero exit, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(f"configuration error: {exc}") from None
        except ExporterError as exc:
            raise click.ClickException(str(exc)) from None


# Commands that run on a database that is not (fully) migrated: they migrate it, or do not need it.
NO_MIGRATION_CHECK = {"db", "up", "config", "check"}
# Commands of a dump's consumers: they need neither Exporter's settings nor its database.
CLIENT_COMMANDS = {"sync"}
# Commands that start a long-running service: they refuse production settings without a secret.
SERVICES = {"up", "web", "worker", "beat"}


@click.group(cls=ExporterGroup)
@click.version_option(package_name="exporter")
@click.option("-v", "--verbose", is_flag=True, help="Show INFO log lines (or set EXPORTER_LOG_LEVEL).")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Exporter: registry exports, resource archives and the jobs that make them."""
    from exporter.logs import configure_logging

    if ctx.invoked_subcommand in CLIENT_COMMANDS:
        configure_logging("INFO" if verbose else "WARNING")
        return
    from exporter.config import PREFIX, load_settings, production_secret_problem

    if ctx.invoked_subcommand in SERVICES:
        problem = production_secret_problem()
        if problem:
            raise click.ClickException(problem)
    try:
        settings = load_settings()
    except ConfigError:
        if ctx.invoked_subcommand != "check":  # `check` lists every bad setting, one line each
            raise
        settings = None
    if settings is None:
        level = "INFO" if verbose else "WARNING"
    elif verbose:
        level = "DEBUG" if settings.log_level == "DEBUG" else "INFO"
    elif os.environ.get(PREFIX + "LOG_LEVEL"):
        level = settings.log_level
    else:
        level = "WARNING"
    configure_logging(level)
    if verbose:
        os.environ[PREFIX + "LOG_LEVEL"] = level
    command = ctx.invoked_subcommand
    if command is None or ctx.resilient_parsing or any(a in ("--help", "-h") for a in sys.argv[1:]):
        return
    if command not in NO_MIGRATION_CHECK:
        require_migrated(context().settings.database_url)


def require_migrated(url: str) -> None:
    """Stop with one line when the database lacks migrations this code needs."""
    from exporter import migrate

    try:
        missing = migrate.missing_heads(url)
    except ExporterError:
        raise
    except Exception as exc:
        raise click.ClickException(f"database {url.split('@')[-1]} cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if missing:
        raise click.ClickException(f"the database is not migrated (missing {', '.join(sorted(missing))}): run `exporter db upgrade`")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from exporter import migrate

    url = context().settings.database_url
    migrate.upgrade(url, revision)
    click.echo(f"database at revision {migrate.current(url)}")


@main.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
def config_cmd(markdown: bool) -> None:
    """Check the settings and print them (secrets hidden)."""
    from exporter.config import PREFIX, SETTINGS, settings_markdown

    if markdown:
        click.echo(settings_markdown())
        return
    settings = context().settings
    for s in SETTINGS:
        value = getattr(settings, s.name.lower())
        hidden = value and any(word in s.name for word in ("SECRET", "TOKEN", "PASSWORD", "BASIC_AUTH"))
        click.echo(f"{PREFIX}{s.name}={'***' if hidden else value}")


@main.command("check")
def check_cmd() -> None:
    """Check a deployment's settings and services; one line per check, non-zero exit if any is wrong."""
    from exporter.config import setting_problems
    from exporter.health import check_deployment

    problems = setting_problems()
    if problems:
        for problem in problems:
            click.echo(f"FAIL settings: {problem}")
        click.echo("FAIL services: not checked until the settings above can be used")
        sys.exit(1)
    checks = check_deployment(context())
    for c in checks:
        click.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@main.command()
@click.option("--per-agency", default=150, show_default=True, type=click.IntRange(1, 100000))
def demo(per_agency: int) -> None:
    """Add demo data (synthetic raids of two agencies) unless there is data already."""
    from exporter.demo import DEMO_AGENCIES, seed

    result = seed(context(), per_agency)
    if result["created"]:
        click.echo(f"demo data: {result['created']} synthetic raids for agencies {', '.join(DEMO_AGENCIES)}")
    else:
        click.echo(f"demo data: {result['existing']} raids already there; nothing added")


@main.group()
def jobs() -> None:
    """Inspect and manage jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["pending", "running", "succeeded", "failed", "cancelled", "expired"]))
@click.option("--kind")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status, kind, limit, as_json) -> None:
    """List the newest jobs."""
    from exporter import jobs as job_api

    rows = job_api.list_jobs(context(), status=status, kind=kind, limit=limit)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in rows], indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    from exporter.raids.registry import scope_labels

    with context().db.session() as session:
        covers = scope_labels(session, rows)
    for j in rows:
        scope = covers[j.id][1] if j.id in covers else ""
        click.echo(f"{j.id}  {j.kind:<16} {j.status:<10} {j.percentage:>3}%  {j.created_at:%Y-%m-%d %H:%M:%S}  {scope}  {j.error or ''}".rstrip())


@jobs.command("show")
@click.argument("job_id")
def jobs_show(job_id: str) -> None:
    """Print one job as JSON."""
    from exporter import jobs as job_api

    click.echo(json.dumps(job_api.get(context(), job_id).to_dict(), indent=2))


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id: str) -> None:
    """Cancel a pending or running job."""
    from exporter import jobs as job_api

    click.echo(f"{job_id}: {job_api.cancel(context(), job_id).status}")


@jobs.command("submit")
@click.argument("kind")
@click.option("--params", default="{}", help="JSON object of parameters.")
@click.option("--wait/--no-wait", default=False, help="Run it in this process instead of enqueueing.")
def jobs_submit(kind: str, params: str, wait: bool) -> None:
    """Submit a job of KIND (e.g. synthetic)."""
    from exporter import jobs as job_api
    from exporter import runner

    try:
        parsed = json.loads(params)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    ctx = context()
    if not wait:
        _install_dispatcher()
    job = job_api.submit(ctx, kind, parsed, requested_by="cli", enqueue=not wait)
    if wait:
        runner.run_job(ctx, job.id)
    job = job_api.get(ctx, job.id)
    click.echo(json.dumps(job.to_dict(), indent=2))
    if job.status == "failed":
        sys.exit(1)


def _install_dispatcher() -> None:
    from workers.app import install_dispatcher

    install_dispatcher()


def _celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app:celery_app", *args]


@main.command()
@click.option("--concurrency", "-c", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True)
@click.option("--pool", default="prefork", show_default=True, type=click.Choice(["prefork", "solo", "threads"]))
def worker(concurrency: int, queues: str, pool: str) -> None:
    """Run a Celery worker (replaces this process)."""
    context()  # validate settings before exec
    argv = _celery_argv("worker", "-l", "INFO", "-c", str(concurrency), "-Q", queues, "-P", pool, "-E")
    os.execv(argv[0], argv)


@main.command()
def beat() -> None:
    """Run celery beat, the scheduler of periodic jobs (replaces this process)."""
    ctx = context()
    argv = _celery_argv("beat", "-l", "INFO", "-s", str(ctx.settings.var_dir / "celerybeat-schedule"))
    os.execv(argv[0], argv)


@main.command()
@click.option("--host")
@click.option("--port", type=int)
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
def web(host: str | None, port: int | None, workers: int) -> None:
    """Run the web app on gunicorn (replaces this process)."""
    settings = context().settings
    bind = f"{host or settings.web_host}:{port or settings.web_port}"
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers), "--threads", "4", "--access-logfile", "-"]
    if _gunicorn_version() >= (27,):
        argv.append("--no-control-socket")  # one per user home otherwise: two instances would share it
    argv.append("web:create_app()")
    os.execv(argv[0], argv)


def _gunicorn_version() -> tuple[int, ...]:
    import gunicorn

    return tuple(gunicorn.version_info)


def flower_bind(settings, address: str | None = None) -> tuple[str, int]:
    """Where Flower listens: FLOWER_URL's port, on its host if that is local, else on every address."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.flower_url)
    return address or (url.hostname if url.hostname in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"), url.port or 80


def port_taken(host: str, port: int) -> bool:
    """Something listens on host:port already (bound the way gunicorn and Flower bind, SO_REUSEADDR)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def flower_argv(settings, address: str | None = None) -> tuple[list[str], dict[str, str]]:
    """`celery flower` on FLOWER_URL's host and port, and the environment giving it basic auth (kept out of `ps`)."""
    from urllib.parse import urlsplit

    from exporter.config import flower_credentials

    user, password = flower_credentials(settings)
    address, port = flower_bind(settings, address)
    argv = _celery_argv("flower", f"--port={port}", f"--address={address}")
    prefix = urlsplit(settings.flower_url).path.strip("/")
    if prefix:
        argv.append(f"--url-prefix={prefix}")
    return argv, {"FLOWER_BASIC_AUTH": f"{user}:{password}"}


@main.command()
@click.option("--address", help="Address to listen on (default: FLOWER_URL's host if local, else all).")
def flower(address: str | None) -> None:
    """Run Flower, the Celery monitor, behind basic auth (replaces this process)."""
    argv, env = flower_argv(context().settings, address)
    os.environ.update(env)
    os.execv(argv[0], argv)


def _die_with_parent() -> None:
    """In a child of `exporter up`: get SIGTERM when `up` dies, even by SIGKILL, so nothing is orphaned (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@main.command()
@click.option("--concurrency", "-c", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-migrate", is_flag=True, help="Do not apply migrations first.")
def up(concurrency: int, no_migrate: bool) -> None:
    """Run web, worker and beat together (the embedded mode); Ctrl-C stops them all."""
    from exporter import migrate

    ctx = context()
    web_at, flower_at = (ctx.settings.web_host, ctx.settings.web_port), flower_bind(ctx.settings)
    for (host, port), setting in ((web_at, "WEB_PORT"), (flower_at, "FLOWER_URL")):
        if port_taken(host, port):
            raise click.ClickException(f"{host}:{port} is in use (another `exporter up`?): stop what listens there or set EXPORTER_{setting}")
    if not no_migrate:
        migrate.upgrade(ctx.settings.database_url)
    from exporter.config import flower_credentials

    flower_credentials(ctx.settings)  # generate the password before Flower and this message need it
    exe = [sys.executable, "-m", "cli"]
    children = {
        "web": exe + ["web"],
        "worker": exe + ["worker", "-c", str(concurrency)],
        "beat": exe + ["beat"],
        "flower": exe + ["flower"],
    }
    procs = {name: subprocess.Popen(argv, preexec_fn=_die_with_parent) for name, argv in children.items()}
    click.echo(f"exporter up: web on {ctx.settings.public_url}, worker (x{concurrency}), beat, Flower on {ctx.settings.flower_url}; Ctrl-C stops")
    if ctx.settings.flower_basic_auth:
        click.echo("exporter up: Flower: log in with EXPORTER_FLOWER_BASIC_AUTH")
    else:
        click.echo(f"exporter up: Flower: log in as operator with the password in {ctx.settings.var_dir / 'flower_password'}")
    if ctx.settings.operator_password:
        click.echo("exporter up: operator pages: log in with EXPORTER_OPERATOR_PASSWORD")
    else:
        from exporter.config import kept_secret

        kept_secret(ctx.settings.var_dir, "operator_password", 18)
        click.echo(f"exporter up: operator pages: log in with the password in {ctx.settings.var_dir / 'operator_password'}")
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                click.echo(f"exporter up: {name} exited with {proc.returncode}; stopping the others", err=True)
                exit_code = 1
                stopping = True
                break
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    click.echo("exporter up: stopped")
    sys.exit(exit_code)


for _module, _attr in COMMAND_MODULES:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":
    main()
