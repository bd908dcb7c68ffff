"""`novanet vif`: plug an instance's VIFs on this host (compute side), or describe them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service
from novanet.domain.errors import InvalidInput
from novanet.service import instances as I

app = typer.Typer(help="Plug, unplug and describe VIFs on this host (acts in the namespace it runs in).")

Ref = Annotated[
    str, typer.Argument(metavar="UUID", help="UUID of the instance (all its VIFs) or of one VIF.")
]


def _vifs(ctx: typer.Context, ref: str) -> list[dict[str, Any]]:
    return I.vifs(service(ctx), ref)


@app.command("plug")
def plug(
    ctx: typer.Context,
    ref: Ref,
    netns: Annotated[
        str | None, option("--netns", metavar="NAME", help="Instance network namespace: veth eth0, eth1...")
    ] = None,
    tap: Annotated[
        str | None,
        option(
            "--tap", metavar="NAME", help="Tap device of qemu/libvirt (one VIF); must be the VIF's devname."
        ),
    ] = None,
) -> None:
    """Put the VIFs on their bridges: a veth into a network namespace, or a tap."""
    from novanet.host import vif as hostvif

    if (netns is None) == (tap is None):
        raise InvalidInput("give exactly one of --netns NAME or --tap NAME")
    vifs = _vifs(ctx, ref)
    mtu = service(ctx).config.network_device_mtu
    if tap is not None:
        if len(vifs) != 1:
            raise InvalidInput(f"instance has {len(vifs)} VIFs; plug a tap per VIF by its VIF UUID")
        if tap != vifs[0]["devname"]:
            # The bridge filter knows the VIF by its device name and drops every other
            # port: a tap under another name would carry nothing.
            raise InvalidInput(
                f"tap {tap!r} is not the device name of this VIF: name the tap {vifs[0]['devname']}"
                " (as `novanet vif xml` tells libvirt)"
            )
        hostvif.plug_tap(tap, vifs[0]["network"]["bridge"], mtu)
        output.message(f"plugged tap {tap} into {vifs[0]['network']['bridge']}")
        return
    assert netns is not None
    for i, v in enumerate(vifs):
        hostvif.plug_netns(v["address"], v["devname"], v["network"]["bridge"], netns, mtu, f"eth{i}")
        output.message(
            f"plugged {v['devname']} ({v['address']}) into {v['network']['bridge']} as {netns}/eth{i}"
        )


@app.command("unplug")
def unplug(
    ctx: typer.Context,
    ref: Ref,
    tap: Annotated[str | None, option("--tap", metavar="NAME", help="The tap given to plug.")] = None,
) -> None:
    """Remove the host side of the VIFs (their veth peers go with them); gone is fine."""
    from novanet.host import vif as hostvif

    names = [tap] if tap else [v["devname"] for v in _vifs(ctx, ref)]
    for n in names:
        hostvif.unplug(n)
    output.message(f"unplugged {', '.join(names)}")


@app.command("xml")
def xml(ctx: typer.Context, ref: Ref) -> None:
    """The libvirt <interface> element of each VIF."""
    from novanet.host import vif as hostvif

    for v in _vifs(ctx, ref):
        output.message(hostvif.libvirt_xml(v))
