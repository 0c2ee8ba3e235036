"""`exporter dump ...` (publish an agency's dump, show its state) and `exporter sync SOURCE DEST` (the mirror client)."""

from __future__ import annotations

import json
import sys
import threading

import click

from cli.progress import progressbar


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group("dump")
def dump() -> None:
    """Public dumps: an agency's change feed of public records under dumps/<agency>/."""


@dump.command("publish")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--wait", is_flag=True, help="Publish in this process and print the outcome, instead of handing it to the workers.")
def publish_cmd(agency: str, wait: bool) -> None:
    """Publish the agency's next change set (and a full snapshot when one is due)."""
    from exporter import jobs, runner
    from exporter.dumps.kinds import KIND
    from exporter.raids.registry import get_agency

    ctx = _ctx()
    with ctx.db.session() as s:
        get_agency(s, agency)
    if not wait:
        from workers.app import install_dispatcher

        install_dispatcher()
        job = jobs.submit(ctx, KIND, {"agency": agency}, requested_by="cli")
        click.echo(f"{job.id} enqueued ({KIND}); follow it with: exporter jobs show {job.id}")
        return
    job = jobs.submit(ctx, KIND, {"agency": agency}, requested_by="cli", enqueue=False)
    runner.run_job(ctx, job.id)
    done = jobs.get(ctx, job.id)
    if done.status != "succeeded":
        click.echo(f"{job.id} {done.status}: {done.error}", err=True)
        sys.exit(1)
    r = done.result or {}
    if not r.get("published"):
        click.echo(f"{job.id} succeeded: nothing changed; the dump stays at change set {r.get('seq')}")
        return
    snap = ", with a full snapshot" if r.get("snapshot") else ""
    click.echo(f"{job.id} succeeded: change set {r['seq']}{snap}: {r['upserts']} upserts, {r['deletes']} deletes in {r['parts']} part(s); {r['manifest_key']}")


@dump.command("status")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
def status_cmd(agency: str) -> None:
    """Print the agency's dump state (seq, snapshot, kept change sets) as JSON."""
    from exporter.dumps.publish import status

    click.echo(json.dumps(status(_ctx(), agency), indent=2))


class _Bar:
    """A progress bar on stderr per batch of records being applied (change set or snapshot)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.total = None
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self.lock:
            if self.bar is None or total != self.total or done < self.bar.pos:
                self.close()
                self.bar = progressbar(length=max(total, 1), label="syncing", show_pos=True)
                self.bar.__enter__()
                self.total = total
            self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command("sync")
@click.argument("source")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["json", "xml"]), default="json", show_default=True, help="One file per raid: its public JSON, or DataCite XML 4.x.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Parts fetched and applied at once.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", help="S3-compatible endpoint for an s3:// SOURCE (or AWS_ENDPOINT_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary at the end.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sync(source: str, dest: str, fmt: str, workers: int, endpoint_url: str | None, as_json: bool, no_progress: bool) -> None:
    """Keep DEST (a local folder) in step with the dump at SOURCE, fetching only what changed.

    SOURCE is the http(s) URL of a dump's folder (where LATEST.json is, e.g.
    https://exporter.example.org/public/dumps/038sjwq14) or s3://bucket/prefix.
    """
    from exporter.dumps.sources import open_source
    from exporter.dumps.sync import sync as run_sync

    bar = _Bar(not no_progress and sys.stderr.isatty())
    src = open_source(source, endpoint_url, pool=max(workers, 4))
    try:
        summary = run_sync(src, dest, fmt=fmt, workers=workers, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"\ninterrupted: {dest} is as after its last complete change set; run again to resume", err=True)
        sys.exit(130)
    finally:
        bar.close()
        src.close()
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
    elif summary.up_to_date:
        click.echo(f"up to date at change set {summary.to_seq} ({summary.requests} request, {summary.seconds} s)")
    else:
        start = f"snapshot {summary.snapshot}" if summary.snapshot is not None else f"change set {summary.from_seq}"
        click.echo(
            f"{start} -> change set {summary.to_seq}: {summary.written} written, {summary.deleted} deleted, {summary.unchanged} unchanged "
            f"({summary.fetched} records fetched, {summary.requests} requests, {summary.seconds} s)"
        )
