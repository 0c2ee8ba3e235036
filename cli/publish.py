"""`exporter publish ...`: public exports to Zenodo (publish one, publish automatically, show the record)."""

from __future__ import annotations

import json
import sys
import time

import click

TRANSIENT_RETRIES = 5


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group("publish")
def publish() -> None:
    """Publish public exports: each becomes a new version of the agency's Zenodo record."""


@publish.command("zenodo")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--export", "export_id", help="The export job to publish (default: the agency's newest succeeded full public export).")
@click.option("--wait", is_flag=True, help="Publish in this process and wait for the record, instead of handing it to the workers.")
@click.option("--json", "as_json", is_flag=True, help="Print the publication as JSON (record_id, doi, concept_doi, version, files, status).")
def zenodo_cmd(agency: str, export_id: str | None, wait: bool, as_json: bool) -> None:
    """Publish a full public export of AGENCY to Zenodo (EXPORTER_ZENODO_URL, EXPORTER_ZENODO_TOKEN)."""
    from exporter import jobs
    from exporter.models import ACTIVE_STATUSES
    from exporter.publish.zenodo import publication_view, request_publication

    ctx = _ctx()
    if not wait:
        from workers.app import install_dispatcher

        install_dispatcher()
    job = request_publication(ctx, agency, export_id, requested_by="cli", enqueue=not wait)
    if wait:
        _run_here(ctx, job.id)
        while (job := jobs.get(ctx, job.id)).status in ACTIVE_STATUSES:  # joined a job a worker runs
            time.sleep(0.5)
    view = publication_view(jobs.get(ctx, job.id))
    if as_json:
        click.echo(json.dumps(view, indent=2))
    elif view["status"] in ("pending", "running"):
        click.echo(f"{job.id} {view['status']}: publication of export {view['export_job_id']} handed to the workers; follow it with: exporter jobs show {job.id}")
    else:
        _print(view)
    if view["status"] in ("failed", "cancelled"):
        sys.exit(1)


def _run_here(ctx, job_id: str) -> None:
    """Run the job in this process; a transient failure (Zenodo busy, rate limited) is retried with backoff."""
    from exporter import runner
    from exporter.errors import TransientError

    for attempt in range(TRANSIENT_RETRIES + 1):
        try:
            runner.run_job(ctx, job_id)
            return
        except TransientError as exc:
            if attempt == TRANSIENT_RETRIES:
                raise click.ClickException(f"{job_id}: still failing after {attempt + 1} attempts: {exc}; the job stays pending and the workers will retry it") from None
            wait = 2 ** (attempt + 1)
            click.echo(f"{job_id}: {exc}; trying again in {wait} s", err=True)
            time.sleep(wait)


def _print(view: dict) -> None:
    if view["status"] == "failed":
        click.echo(f"{view['id']} failed: {view['error']}", err=True)
        return
    click.echo(f"{view['id']} {view['status']}: version {view['version']} of agency {view['agency']}")
    for label, key in (("record", "record_id"), ("DOI", "doi"), ("concept DOI", "concept_doi")):
        link = view["links"].get({"record_id": "record"}.get(key, key))
        click.echo(f"  {label}: {view[key]}" + (f" ({link})" if link else ""))
    for f in view["files"]:
        click.echo(f"  {f['key']}: {f['size']} bytes, md5 {f['md5']}")


@publish.command("auto")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--off", is_flag=True, help="Stop publishing this agency automatically.")
def auto_cmd(agency: str, off: bool) -> None:
    """Publish every successful full public export of AGENCY (nightly included) to Zenodo automatically."""
    from exporter.publish.zenodo import set_auto_publish

    concept = set_auto_publish(_ctx(), agency, not off)
    if concept.auto_publish:
        click.echo(f"agency {concept.agency_id}: every successful full public export is published to Zenodo")
    else:
        click.echo(f"agency {concept.agency_id}: exports are published to Zenodo only when asked")


@publish.command("adopt")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--record", "record_id", required=True, help="The id of the agency's published Zenodo record, e.g. 1234567.")
def adopt_cmd(agency: str, record_id: str) -> None:
    """Continue the agency's Zenodo record made by hand: its next export becomes that record's next version."""
    from exporter.publish.zenodo import adopt_record

    concept = adopt_record(_ctx(), agency, record_id)
    click.echo(f"agency {concept.agency_id}: the next export becomes a new version of record {concept.latest_record_id} (concept DOI {concept.concept_doi})")


@publish.command("status")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(agency: str, as_json: bool) -> None:
    """Show the agency's Zenodo concept record and every export's version."""
    from exporter.publish.zenodo import concept_of

    concept, versions = concept_of(_ctx(), agency)
    rows = [
        {"export_job_id": v.export_job_id, "version": v.version, "state": v.state, "record_id": v.draft_id, "doi": v.doi, "error": v.error}
        for v in versions
    ]
    out = {
        "agency": concept.agency_id if concept else agency,
        "auto_publish": bool(concept and concept.auto_publish),
        "concept_record_id": concept.concept_record_id if concept else None,
        "concept_doi": concept.concept_doi if concept else None,
        "versions": rows,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"agency {out['agency']}: concept DOI {out['concept_doi'] or '(not published yet)'}; automatic publication {'on' if out['auto_publish'] else 'off'}")
    for r in rows:
        click.echo(f"  {r['version']}  {r['state']:<10} {r['doi'] or ''}  export {r['export_job_id']}" + (f"  ({r['error']})" if r["error"] else ""))
