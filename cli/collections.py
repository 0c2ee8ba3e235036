"""`exporter collections ...`: citizen-science collections (projects, polls, approval of batches)."""

from __future__ import annotations

import json
import sys

import click


def _ctx(dispatch: bool = True):
    """The context; with `dispatch`, one that sends jobs and e-mails to the broker (unless the process set its own)."""
    from exporter.context import _no_dispatcher, get_context

    ctx = get_context()
    if dispatch and ctx.enqueue is _no_dispatcher:
        from workers.app import install_dispatcher

        install_dispatcher()
    return ctx


@click.group("collections")
def collections() -> None:
    """Image collections sent to Zooniverse once approved: projects, polls, batches, decisions."""


@collections.command("add")
@click.argument("name")
@click.option("--source", required=True, help="The collection: a folder (under EXPORTER_COLLECTIONS_SOURCE_ROOTS) or s3://bucket/prefix.")
@click.option("--owner", "owner_email", required=True, help="The owner's e-mail address (told of every step).")
@click.option("--owner-name", help="The owner's name.")
@click.option("--zooniverse-project", help="The Zooniverse project id batches are imported into.")
@click.option("--subject-set", help="The subject set id (default: one is made at the first import).")
@click.option("--callback-url", help="A URL told of every step by signed webhook.")
def add_cmd(name, source, owner_email, owner_name, zooniverse_project, subject_set, callback_url) -> None:
    """Add project NAME and print its grant token (once: only its hash is kept)."""
    from exporter.collections.projects import add_project

    p, grant = add_project(_ctx(False), name, source, owner_email, owner_name=owner_name, zooniverse_project=zooniverse_project, subject_set=subject_set, callback_url=callback_url)
    click.echo(grant)
    click.echo(f"project {p.name} ({p.id}) reads {p.source}; the grant above is shown once: give it to the owner, who reads the project with it as a bearer token "
               f"(GET /api/v1/collections/projects/{p.name}) and revokes it (POST .../revoke-grant, or `exporter collections revoke-grant {p.name}`)", err=True)


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """List the projects."""
    from exporter.collections.projects import list_projects, project_view

    rows = [project_view(p) for p in list_projects(_ctx(False))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no collection projects")
    for r in rows:
        rights = "rights approved" if r["dataRightsApproved"] else "rights pending"
        click.echo(f"{r['name']:<24} {r['status']:<9} {rights:<15} {r['owner']['email']:<30} {r['source']}")


@collections.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(name: str, as_json: bool) -> None:
    """Show project NAME and its batches."""
    from exporter.collections.projects import project, project_view
    from exporter.collections.views import list_batches

    ctx = _ctx(False)
    out = project_view(project(ctx, name))
    out["batches"] = list_batches(ctx, project=name)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{out['name']}: {out['status']}, source {out['source']}, owner {out['owner']['email']}, data rights {'approved' if out['dataRightsApproved'] else 'not approved'}, "
               f"grant {'valid' if out['grant']['valid'] else 'revoked'}, Zooniverse project {out['zooniverseProject'] or '-'} subject set {out['subjectSet'] or '-'}")
    if out["lastPollError"]:
        click.echo(f"  last poll: {out['lastPollError']}")
    for b in out["batches"]:
        c = b["counts"]
        click.echo(f"  batch {b['id']:<5} {b['state']:<18} {c['files']} files, {c['converted']} converted, {c['refused']} refused, {c['waiting']} waiting" + (f"  {b['manifestURL']}" if b["manifestURL"] else ""))


@collections.command("batch")
@click.argument("batch")
def batch_cmd(batch: str) -> None:
    """Print batch BATCH as JSON (files, refusals with reasons, overlap, decisions)."""
    from exporter.collections.views import get_batch

    click.echo(json.dumps(get_batch(_ctx(False), batch), indent=2))


@collections.command("poll")
@click.argument("name", required=False)
@click.option("--wait", is_flag=True, help="Retrieve and convert the new batch in this process, instead of handing it to the workers.")
def poll_cmd(name: str | None, wait: bool) -> None:
    """Look for new files in project NAME's source (every active project without NAME)."""
    from exporter import jobs, runner
    from exporter.collections.batches import poll_all, poll_project
    from exporter.collections.projects import list_projects

    ctx = _ctx()
    names = [name] if name else [p.name for p in list_projects(ctx) if p.status == "active"]
    if not name and not wait:
        results = poll_all(ctx, warn=False)  # each skipped project is told below, once
    else:
        results = []
        for n in names:
            r = poll_project(ctx, n, enqueue=not wait)
            if wait and r.job_id:
                runner.run_job(ctx, r.job_id)
            results.append(r.to_dict())
    failed = False
    for r in results:
        if r["skipped"]:
            click.echo(f"{r['project']}: not polled: {r['skipped']}", err=True)
            failed = failed or bool(name)
            continue
        line = f"{r['project']}: {r['found']} new file(s)"
        if r["batch"]:
            line += f"; batch {r['batch']} takes {r['taken']}" + (f", {r['waiting']} wait for a later batch" if r["waiting"] else "")
            if wait:
                job = jobs.get(ctx, r["job"])
                line += f"; {job.status}" + (f": {job.error}" if job.error else "")
                failed = failed or job.status != "succeeded"
        click.echo(line)
    if failed:
        sys.exit(1)


@collections.command("approve")
@click.argument("batch")
@click.option("--by", required=True, help="Who approves (kept in the audit).")
@click.option("--note", help="A note kept with the decision and sent to the owner.")
def approve_cmd(batch: str, by: str, note: str | None) -> None:
    """Approve batch BATCH: it is published and the owner told."""
    from exporter.collections.batches import approve

    b = approve(_ctx(), batch, by, note)
    click.echo(f"batch {b.id} approved by {by}; publication job {b.publish_job_id}")


@collections.command("decline")
@click.argument("batch")
@click.option("--by", required=True, help="Who declines (kept in the audit).")
@click.option("--reason", required=True, help="Why; the owner is told.")
def decline_cmd(batch: str, by: str, reason: str) -> None:
    """Decline batch BATCH with a reason: nothing of it is published."""
    from exporter.collections.batches import decline

    b = decline(_ctx(), batch, by, reason)
    click.echo(f"batch {b.id} declined by {by}")


@collections.command("rights")
@click.argument("name")
@click.option("--approved/--not-approved", required=True, help="Whether the project's data rights are approved (batches up to EXPORTER_COLLECTIONS_CAP, else EXPORTER_COLLECTIONS_CAP_UNAPPROVED).")
@click.option("--by", default="cli", show_default=True, help="Who records it (kept in the audit).")
@click.option("--note", help="A note kept with the decision.")
def rights_cmd(name: str, approved: bool, by: str, note: str | None) -> None:
    """Record whether project NAME's data rights are approved."""
    from exporter.collections.projects import cap_of, set_data_rights

    ctx = _ctx(False)
    p = set_data_rights(ctx, name, approved, by, note)
    click.echo(f"project {p.name}: data rights {'approved' if approved else 'not approved'}; a batch holds up to {cap_of(ctx, p)} files")


@collections.command("revoke-grant")
@click.argument("name")
@click.option("--by", default="cli", show_default=True, help="Who revokes it (kept in the audit).")
def revoke_cmd(name: str, by: str) -> None:
    """Revoke project NAME's grant: its source is read no more (a running batch stops at its next file)."""
    from exporter.collections.projects import revoke_grant

    p = revoke_grant(_ctx(False), name, by)
    click.echo(f"project {p.name}: grant revoked; {p.source} is not read again until `exporter collections grant {p.name}`")


@collections.command("grant")
@click.argument("name")
@click.option("--by", default="cli", show_default=True, help="Who grants it (kept in the audit).")
def grant_cmd(name: str, by: str) -> None:
    """Make a new grant for project NAME's source (the old one stops working) and print it once."""
    from exporter.collections.projects import new_grant

    click.echo(new_grant(_ctx(False), name, by))


@collections.command("status")
@click.argument("name")
@click.argument("status", type=click.Choice(["active", "complete", "cancelled"]))
@click.option("--by", default="cli", show_default=True)
def status_cmd(name: str, status: str, by: str) -> None:
    """Set project NAME active, complete or cancelled (only active projects are polled)."""
    from exporter.collections.projects import set_status

    click.echo(f"project {set_status(_ctx(False), name, status, by).name}: {status}")
