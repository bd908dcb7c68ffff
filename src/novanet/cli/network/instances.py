"""`novanet instance ...`: what nova-compute asks of the network service, by hand."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service, state
from novanet.domain.errors import InvalidInput
from novanet.service import instances as I

app = typer.Typer(
    help="Networks of instances: allocate, deallocate, show (as nova-compute would ask).",
)

JsonOpt = Annotated[bool, option("--json", help="Print JSON (the instance's network info) instead of text.")]
Uuid = Annotated[str, typer.Argument(metavar="UUID", help="UUID of the instance.")]


def requested_network(value: str) -> I.RequestedNetwork:
    """NET_UUID or NET_UUID=ADDRESS, as nova boot --nic net-id=...,v4-fixed-ip=..."""
    net, sep, address = value.partition("=")
    net, address = net.strip(), address.strip()
    if not net or (sep and not address):
        raise typer.BadParameter(f"{value!r}: expected NET_UUID or NET_UUID=ADDRESS")
    return I.RequestedNetwork(net, address or None)


def _parse_networks(values: list[str] | None) -> list[I.RequestedNetwork] | None:
    if not values:
        return None
    return [requested_network(v) for v in values]


def _addresses(network_info: list[dict[str, Any]]) -> list[str]:
    out = []
    for vif in network_info:
        for subnet in vif["network"]["subnets"]:
            for ip in subnet["ips"]:
                floats = [f["address"] for f in ip.get("floating_ips", [])]
                out.append(ip["address"] + (f" (floating {', '.join(floats)})" if floats else ""))
    return out


@app.command("allocate")
def allocate(
    ctx: typer.Context,
    uuids: Annotated[
        list[str],
        typer.Argument(
            metavar="UUID",
            help="UUID of the instance; several instances are allocated in one transaction, all or none.",
        ),
    ],
    project_id: Annotated[str, option("--project-id", metavar="PROJECT", help="Project of the instances.")],
    host: Annotated[str, option("--host", help="Compute host the instances run on.")],
    network: Annotated[
        list[str] | None,
        option(
            "--network",
            metavar="NET_UUID[=ADDRESS]",
            callback=_parse_networks,
            help="Network to join, optionally with the fixed IP wanted (repeatable; an address"
            " only with one instance) [Flat: every network open to the project; VLAN: the"
            " project's network].",
        ),
    ] = None,
    vpn: Annotated[bool, option("--vpn", help="VLAN mode: the project's VPN instance (cloudpipe).")] = False,
    hostname: Annotated[
        str | None, option("--hostname", help="DNS name [server-<uuid>] (only with one instance).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give instances their VIFs and fixed IPs (and a floating IP if auto_assign_floating_ip).

    With one UUID, --json prints its network info; with several, a list of
    {"uuid", "network_info"} in the order given."""
    st = state(ctx)
    # Typer hands over what the --network callback returned.
    requested: list[I.RequestedNetwork] = network or []  # type: ignore[assignment]
    if len(uuids) > 1 and any(r.address for r in requested):
        raise InvalidInput("--network NET_UUID=ADDRESS names the address of one instance; give one UUID")
    if len(uuids) > 1 and hostname:
        raise InvalidInput("--hostname names one instance; give one UUID")
    reqs = [
        I.AllocateRequest(u, project_id, host, requested=requested, vpn=vpn, hostname=hostname) for u in uuids
    ]
    infos = I.allocate_many(st.ctx(), st.mode, reqs)
    if as_json:
        if len(uuids) == 1:
            output.emit_json(infos[0])
        else:
            output.emit_json([{"uuid": u, "network_info": i} for u, i in zip(uuids, infos, strict=True)])
        return
    for u, info in zip(uuids, infos, strict=True):
        output.message(f"allocated {', '.join(_addresses(info))} to instance {u}")


@app.command("deallocate")
def deallocate(
    ctx: typer.Context,
    uuids: Annotated[
        list[str],
        typer.Argument(
            metavar="UUID",
            help="UUID of the instance; several instances are deallocated in one transaction, all or none.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Release instances' addresses: freed now, or once the DHCP lease is gone.

    With one UUID, --json prints its result; with several, a list of them in order."""
    results = I.deallocate_many(service(ctx), uuids)
    if as_json:
        output.emit_json(results[0] if len(uuids) == 1 else results)
        return
    for res in results:
        text = f"deallocated instance {res['uuid']}: freed {', '.join(res['freed']) or 'nothing'}"
        if res["awaiting_release"]:
            text += f"; awaiting DHCP release: {', '.join(res['awaiting_release'])}"
        output.message(text)


@app.command("show")
def show(ctx: typer.Context, uuid: Uuid, as_json: JsonOpt = False) -> None:
    """Show an instance's network info: VIFs, networks, fixed and floating IPs."""
    info = I.show(service(ctx), uuid)
    if as_json:
        output.emit_json(info)
        return
    output.message(
        f"instance {info['uuid']}  project {info['project_id']}  host {info['host']}"
        f"  hostname {info['hostname']}"
    )
    for vif in info["network_info"]:
        net = vif["network"]
        for subnet in net["subnets"]:
            ips = ", ".join(_addresses([{"network": {"subnets": [subnet]}}]))
            output.message(
                f"  vif {vif['address']}  network {net['label']} ({subnet['cidr']}, bridge"
                f" {net['bridge']}, vlan {net['vlan']})  gateway {subnet['gateway']}  ips {ips}"
            )
