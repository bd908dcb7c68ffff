"""`novanet floating ...`: floating IP pools, allocation to projects, association."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service
from novanet.service import floating as F

app = typer.Typer(help="Floating IPs (nova-manage floating ..., nova floating-ip-*).")

JsonOpt = Annotated[bool, option("--json", help="Print JSON instead of text.")]
RangeOpt = Annotated[
    str, option("--ip-range", metavar="RANGE", help="One address, or a CIDR (its host addresses).")
]
Address = Annotated[str, typer.Argument(metavar="ADDRESS", help="The floating IP.")]

HEADERS = ("project", "address", "instance", "pool", "interface", "fixed_address", "host", "auto_assigned")
KEYS = (
    "project_id",
    "address",
    "instance_uuid",
    "pool",
    "interface",
    "fixed_address",
    "host",
    "auto_assigned",
)


@app.command("create")
def create(
    ctx: typer.Context,
    ip_range: RangeOpt,
    pool: Annotated[str | None, option("--pool", help="Pool name [default_floating_pool].")] = None,
    interface: Annotated[
        str | None, option("--interface", help="Public interface for the NAT [public_interface].")
    ] = None,
) -> None:
    """Add floating IPs to a pool; refused if any exists already or lies in a fixed network."""
    svc = service(ctx)
    with output.progress("creating floating IPs") as tick:
        count = F.create_pool(svc, ip_range, pool=pool, interface=interface, progress=tick)
    name = pool or svc.config.default_floating_pool
    output.message(f"created {count} floating IP{'' if count == 1 else 's'} in pool {name}")


@app.command("delete")
def delete(ctx: typer.Context, ip_range: RangeOpt) -> None:
    """Remove the floating IPs of a range; refused while any is allocated to a project."""
    count = F.delete_pool(service(ctx), ip_range)
    output.message(f"deleted {count} floating IP{'' if count == 1 else 's'}")


@app.command("list")
def list_(
    ctx: typer.Context,
    host: Annotated[str | None, option("--host", help="Only addresses NATed on this host.")] = None,
    project_id: Annotated[
        str | None, option("--project-id", metavar="PROJECT", help="Only addresses of this project.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List floating IPs with their project, instance and fixed address."""
    svc = service(ctx)
    with output.spinner("reading floating IPs"):
        rows = F.list_floating(svc, host=host, project_id=project_id)
    if as_json:
        output.emit_json(rows)
        return
    output.table(HEADERS, [[r[k] for k in KEYS] for r in rows])


@app.command("pools")
def pools(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the names of the floating IP pools."""
    names = F.pools(service(ctx))
    if as_json:
        output.emit_json(names)
        return
    for name in names:
        output.message(name)


def _done(as_json: bool, info: dict[str, Any], text: str) -> None:
    if as_json:
        output.emit_json(info)
    else:
        output.message(text)


@app.command("allocate")
def allocate(
    ctx: typer.Context,
    project_id: Annotated[
        str, option("--project-id", metavar="PROJECT", help="Project that gets the address.")
    ],
    pool: Annotated[
        str | None, option("--pool", help="Pool to take it from [default_floating_pool].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a project the first free address of a pool (counts against quota_floating_ips)."""
    info = F.allocate(service(ctx), project_id, pool=pool)
    _done(as_json, info, f"allocated {info['address']} to project {info['project_id']}")


@app.command("associate")
def associate(
    ctx: typer.Context,
    address: Address,
    instance: Annotated[
        str, option("--instance", metavar="UUID", help="UUID of an instance of the same project.")
    ],
    fixed_address: Annotated[
        str | None,
        option("--fixed-address", metavar="ADDRESS", help="Which fixed IP of the instance [its first]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point a project's floating IP at an instance's fixed IP (moves it if associated)."""
    info = F.associate(service(ctx), address, instance, fixed_address=fixed_address)
    _done(
        as_json,
        info,
        f"associated {info['address']} with {info['fixed_address']} of instance {info['instance_uuid']}",
    )


@app.command("disassociate")
def disassociate(ctx: typer.Context, address: Address, as_json: JsonOpt = False) -> None:
    """Detach a floating IP from its instance; the project keeps it."""
    info = F.disassociate(service(ctx), address)
    _done(
        as_json,
        info,
        f"disassociated {info['address']} from {info['fixed_address']} of instance {info['instance_uuid']}",
    )


@app.command("release")
def release(
    ctx: typer.Context,
    address: Address,
    project_id: Annotated[
        str | None,
        option(
            "--project-id",
            metavar="PROJECT",
            help="Act as this project (refused for another's); omit: admin.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Return a project's floating IP to its pool (it must be disassociated first)."""
    info = F.release(service(ctx), address, project_id=project_id)
    _done(as_json, info, f"released {info['address']} from project {info['project_id']}")
