"""`novanet network ...`: create, list, delete and modify fixed-IP networks."""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option, true_false
from novanet.cli.state import service, state
from novanet.domain.models import Network
from novanet.service import networks as N

app = typer.Typer(
    help="Fixed-IP networks (nova-manage network ...).",
)

JsonOpt = Annotated[bool, option("--json", help="Print JSON (the original column names) instead of text.")]

HEADERS = (
    "id",
    "IPv4",
    "netmask",
    "gateway",
    "dhcp_start",
    "DNS1",
    "DNS2",
    "VlanID",
    "project",
    "uuid",
    "host",
)


def _row(n: Network) -> tuple[object, ...]:
    return (
        n.id,
        n.cidr,
        n.netmask,
        n.gateway,
        n.dhcp_start,
        n.dns1,
        n.dns2,
        n.vlan,
        n.project_id,
        n.uuid,
        n.host,
    )


@app.command("create")
def create(
    ctx: typer.Context,
    label: Annotated[
        str, option("--label", metavar="LABEL", help="Name of the network (suffixed _N when several).")
    ],
    fixed_range_v4: Annotated[
        str, option("--fixed-range-v4", metavar="CIDR", help="IPv4 range (CIDR) to carve the networks from.")
    ],
    num_networks: Annotated[
        int | None, option("--num-networks", metavar="N", help="How many networks [config num_networks].")
    ] = None,
    network_size: Annotated[
        int | None,
        option(
            "--network-size",
            metavar="N",
            help="Addresses per network [range / number, at most config network_size].",
        ),
    ] = None,
    vlan: Annotated[
        int | None,
        option(
            "--vlan",
            metavar="START",
            help="VLAN mode: first VLAN id [after the highest in use, or vlan_start].",
        ),
    ] = None,
    vpn: Annotated[
        int | None,
        option(
            "--vpn",
            metavar="START",
            help="VLAN mode: first VPN public port [after the highest, or vpn_start].",
        ),
    ] = None,
    bridge: Annotated[
        str | None,
        option("--bridge", metavar="BR", help="Bridge name [flat: flat_network_bridge; VLAN: br<vlan>]."),
    ] = None,
    bridge_interface: Annotated[
        str | None,
        option(
            "--bridge-interface",
            metavar="IF",
            help="Interface the bridge is attached to [flat_interface/vlan_interface].",
        ),
    ] = None,
    multi_host: Annotated[
        str | None,
        option(
            "--multi-host",
            metavar="T|F",
            callback=true_false,
            help="Gateway, DHCP and NAT on every instance host [config multi_host].",
        ),
    ] = None,
    dns1: Annotated[
        str | None, option("--dns1", metavar="IP", help="First DNS server [flat_network_dns].")
    ] = None,
    dns2: Annotated[str | None, option("--dns2", metavar="IP", help="Second DNS server.")] = None,
    gateway: Annotated[
        str | None,
        option("--gateway", metavar="IP", help="Gateway address (one network only) [second address]."),
    ] = None,
    fixed_cidr: Annotated[
        str | None,
        option("--fixed-cidr", metavar="CIDR", help="Hand out only addresses inside this CIDR of the range."),
    ] = None,
    project_id: Annotated[
        str | None, option("--project-id", metavar="PROJECT", help="Project that owns the networks.")
    ] = None,
    uuid: Annotated[
        str | None, option("--uuid", metavar="UUID", help="UUID of the network (one network only).")
    ] = None,
    priority: Annotated[
        int | None,
        option("--priority", metavar="N", help="Order in which flat networks are picked (lower first)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create networks and all their fixed IPs, as `nova-manage network create`.

    The network manager (--network-manager or the network_manager option) decides the
    addressing: Flat and FlatDHCP reserve the network, gateway and broadcast addresses;
    VLAN also reserves the VPN address and gives each network a VLAN, a bridge br<vlan>
    and a VPN port.
    """
    st = state(ctx)
    svc = st.ctx()
    # Typer hands over what the T|F callback returned.
    mh: bool | None = multi_host  # type: ignore[assignment]
    req = N.NetworkRequest(
        label=label,
        fixed_range_v4=fixed_range_v4,
        num_networks=num_networks,
        network_size=network_size,
        vlan_start=vlan,
        vpn_start=vpn,
        bridge=bridge,
        bridge_interface=bridge_interface,
        multi_host=mh,
        dns1=dns1,
        dns2=dns2,
        gateway=gateway,
        fixed_cidr=fixed_cidr,
        project_id=project_id,
        uuid=uuid,
        priority=priority,
    )
    with output.progress("creating fixed IPs") as tick:
        created = N.create_networks(svc, st.mode, req, progress=tick)
    if as_json:
        output.emit_json([n.public() for n in created])
        return
    if len(created) == 1:
        n = created[0]
        output.message(f"created network {n.cidr} (uuid {n.uuid})")
    else:
        output.message(f"created {len(created)} networks: {', '.join(n.cidr for n in created)}")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every network (JSON: all columns; text: nova-manage's summary)."""
    svc = service(ctx)
    nets = N.list_networks(svc)
    if as_json:
        output.emit_json([n.public() for n in nets])
        return
    output.table(HEADERS, [_row(n) for n in nets])


@app.command("delete")
def delete(
    ctx: typer.Context,
    fixed_range: Annotated[
        str | None, option("--fixed-range", metavar="CIDR", help="CIDR of the network.")
    ] = None,
    uuid: Annotated[str | None, option("--uuid", metavar="UUID", help="UUID of the network.")] = None,
) -> None:
    """Delete one network, given by --fixed-range or --uuid.

    Refused while the network belongs to a project or any of its addresses is allocated.
    """
    net = N.delete_network(service(ctx), fixed_range=fixed_range, uuid=uuid)
    output.message(f"deleted network {net.cidr} (uuid {net.uuid})")


@app.command("modify")
def modify(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(metavar="CIDR", help="CIDR (or UUID) of the network.")],
    project: Annotated[str | None, option("--project", help="Associate with this project.")] = None,
    host: Annotated[str | None, option("--host", help="Associate with this network host.")] = None,
    disassociate_project: Annotated[
        bool, option("--disassociate-project", help="Drop the project association.")
    ] = False,
    disassociate_host: Annotated[
        bool, option("--disassociate-host", help="Drop the host association.")
    ] = False,
) -> None:
    """Associate a network with a project or a host, or drop those associations."""
    net = N.modify_network(
        service(ctx),
        network,
        project=project,
        host=host,
        disassociate_project=disassociate_project,
        disassociate_host=disassociate_host,
    )
    output.message(f"modified network {net.cidr}: project {net.project_id}, host {net.host}")
