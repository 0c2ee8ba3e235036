"""`exporter tokens ...`: create, list and revoke API tokens."""

from __future__ import annotations

import json

import click

from exporter.roles import ROLES


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group()
def tokens() -> None:
    """API tokens (stored hashed; a token is shown once, when it is created)."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="operator: all jobs; service_point: its own private exports; read_only: reads; approver: approves or declines collection batches.")
@click.option("--service-point", "service_point", type=click.IntRange(1), help="The registered service point a service_point token belongs to.")
@click.option("--name", help="Who or what the token is for.")
def tokens_create(role: str, service_point: int | None, name: str | None) -> None:
    """Make a token and print it once."""
    from exporter.access import create_token
    from exporter.raids.registry import get_service_point

    ctx = _ctx()
    if service_point is not None:
        with ctx.db.session() as session:
            get_service_point(session, service_point)  # a token for a service point no raid can have would see nothing
    row, raw = create_token(ctx, role, service_point_id=None if service_point is None else str(service_point), name=name)
    click.echo(raw)
    click.echo(f"token {row.id} ({role}{', service point ' + row.service_point_id if row.service_point_id else ''}): keep it now, it is not shown again", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--active", is_flag=True, help="Leave out revoked tokens.")
def tokens_list(as_json: bool, active: bool) -> None:
    """List tokens (their first characters only)."""
    from exporter.access import list_tokens

    rows = list_tokens(_ctx(), include_revoked=not active)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no tokens")
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        used = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never"
        click.echo(f"{r.id:>4}  {r.prefix}…  {r.role:<13} {r.service_point_id or '-':<12} {state:<24} used {used:<16} {r.name or ''}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    from exporter.access import revoke_token

    row = revoke_token(_ctx(), token_id)
    click.echo(f"token {row.id} revoked")
