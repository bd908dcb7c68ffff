"""`novanet fixed ...`: list fixed IPs, reserve and unreserve them, free stale ones."""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service
from novanet.service import fixed as X

app = typer.Typer(help="Fixed IPs of the networks (nova-manage fixed ...).")

JsonOpt = Annotated[bool, option("--json", help="Print JSON instead of text.")]
AddressOpt = Annotated[str, option("--address", help="The fixed IP.")]

HEADERS = ("network", "address", "hostname", "host", "allocated", "leased", "reserved")
KEYS = HEADERS


@app.command("list")
def list_(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        option(
            "--host",
            help="Only addresses of instances on this host, and its own multi-host gateway addresses.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List every address of every network with its flags (allocated, leased, reserved)."""
    svc = service(ctx)
    with output.spinner("reading fixed IPs"):
        rows = X.list_fixed(svc, host=host)
    if as_json:
        output.emit_json(rows)
        return
    output.table(HEADERS, [[r[k] for k in KEYS] for r in rows])


@app.command("reserve")
def reserve(ctx: typer.Context, address: AddressOpt) -> None:
    """Keep an address from being handed out to instances."""
    res = X.set_reserved(service(ctx), address, True)
    output.message(f"reserved {res['address']}")


@app.command("unreserve")
def unreserve(ctx: typer.Context, address: AddressOpt) -> None:
    """Make a reserved address available again (not the network, gateway or broadcast)."""
    res = X.set_reserved(service(ctx), address, False)
    output.message(f"unreserved {res['address']}")


@app.command("cleanup")
def cleanup(ctx: typer.Context) -> None:
    """Free deallocated addresses older than fixed_ip_disassociate_timeout seconds."""
    freed = X.cleanup(service(ctx))
    output.message(f"freed {freed} fixed IP{'' if freed == 1 else 's'}")
