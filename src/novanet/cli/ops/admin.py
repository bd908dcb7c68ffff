"""`novanet db ...` and `novanet vpn ...`: schema migrations and the cloudpipe VPN endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.state import service, state

db_app = typer.Typer(help="The database schema.")
vpn_app = typer.Typer(help="Cloudpipe VPN endpoints of VLAN networks.")


@db_app.command("sync")
def sync(ctx: typer.Context) -> None:
    """Create or upgrade the schema to this novanet's revision (needed once on PostgreSQL)."""
    from novanet.db.migrate import sync as migrate

    _before, after = migrate(state(ctx).engine())
    output.message(f"database at revision {after}")


@vpn_app.command("change")
def change(
    ctx: typer.Context,
    project: Annotated[
        str, typer.Option("--project", metavar="PROJECT", help="Project whose VLAN network's VPN moves.")
    ],
    ip: Annotated[str, typer.Option("--ip", metavar="IP", help="Public address of the VPN.")],
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Public UDP port of the VPN.")],
) -> None:
    """Point a project's VPN at a public address and port (DNATed to its VPN instance)."""
    from novanet.service import vpn

    nets = vpn.change(service(ctx), project, ip, port)
    for n in nets:
        output.message(f"VPN of project {project} is {n.vpn_public_address}:{n.vpn_public_port} ({n.cidr})")
