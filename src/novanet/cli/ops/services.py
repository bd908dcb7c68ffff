"""`novanet service list`: hosts running an agent, with their heartbeats."""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service

app = typer.Typer(help="Agents of the hosts: role, last heartbeat, up or down.")


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Every host with an agent: role, duties, last heartbeat, state (service_down_time)."""
    from novanet.service import hosts

    rows = hosts.list_services(service(ctx))
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        ("host", "role", "duties", "last_heartbeat", "state"),
        [[r["host"], r["role"], ",".join(r["duties"]), r["last_heartbeat"], r["state"]] for r in rows],
    )
