"""VIF plugging on the real kernel: a "host" and an "instance" namespace per test."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from novanet.host.model import Bridge
from novanet.host.netlink.realizer import PyrouteLinks, ensure_bridges
from novanet.host.vif import plug_netns, plug_tap, unplug

if TYPE_CHECKING:  # the fixture's types; conftest is not importable as a module
    from nslab import Netns, World

MAC = "fa:16:3e:12:34:56"
DEV = "tap0123456789a"


def link(ns: Netns, dev: str) -> dict[str, Any]:
    [info] = json.loads(ns.run("ip", "-j", "-d", "link", "show", "dev", dev))
    return info  # type: ignore[no-any-return]


def link_names(ns: Netns) -> set[str]:
    return {i["ifname"] for i in json.loads(ns.run("ip", "-j", "link", "show"))}


def test_plug_netns_unplug(world: World) -> None:
    h, inst = world.ns("ph"), world.ns("pi")
    with PyrouteLinks(h.name) as backend:
        ensure_bridges(backend, [Bridge("br100", ("10.0.0.1/24",))])
        changes = plug_netns(MAC.upper(), DEV, "br100", inst.name, mtu=1400, links=backend)
        assert f"created veth {DEV}" in changes
        assert plug_netns(MAC, DEV, "br100", inst.name, mtu=1400, links=backend) == []

    eth0 = link(inst, "eth0")
    assert (eth0["address"], eth0["mtu"], eth0["linkinfo"]["info_kind"]) == (MAC, 1400, "veth")
    assert "UP" in eth0["flags"]
    host_end = link(h, DEV)
    assert (host_end["master"], host_end["mtu"]) == ("br100", 1400)
    assert "UP" in host_end["flags"]
    assert not [n for n in link_names(h) if n.startswith("nvp")]

    inst.run("ip", "addr", "add", "10.0.0.5/24", "dev", "eth0")
    inst.run("ping", "-c", "1", "-W", "3", "10.0.0.1", timeout=30)

    with PyrouteLinks(h.name) as backend:
        assert unplug(DEV, links=backend) == [f"deleted {DEV}"]
        assert unplug(DEV, links=backend) == []
    assert DEV not in link_names(h)
    assert "eth0" not in link_names(inst)


def test_plug_in_the_namespace_the_process_runs_in(world: World) -> None:
    """The compute side calls without a backend: it acts where it runs."""
    h, inst = world.ns("qh"), world.ns("qi")
    h.run("ip", "link", "add", "br9", "type", "bridge")
    code = (
        "from novanet.host.vif import plug_netns, unplug;"
        f"print(len(plug_netns({MAC!r}, 'tapq', 'br9', {inst.name!r})));"
        f"print(len(plug_netns({MAC!r}, 'tapq', 'br9', {inst.name!r})))"
    )
    assert h.run(sys.executable, "-c", code).split() != ["0", "0"]
    assert h.run(sys.executable, "-c", code).split() == ["0", "0"]
    assert link(h, "tapq")["master"] == "br9"
    assert link(inst, "eth0")["address"] == MAC


def test_plug_tap_creates_it_in_the_right_namespace(world: World) -> None:
    h = world.ns("th")
    with PyrouteLinks(h.name) as backend:
        ensure_bridges(backend, [Bridge("br100")])
        assert plug_tap("tapvm1", "br100", mtu=1450, links=backend)[0] == "created tap tapvm1"
        assert plug_tap("tapvm1", "br100", mtu=1450, links=backend) == []
    tap = link(h, "tapvm1")
    assert (tap["linkinfo"]["info_kind"], tap["master"], tap["mtu"]) == ("tun", "br100", 1450)
    # created inside the test namespace, never in the root one (read-only look)
    root = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "tapvm1" not in {i["ifname"] for i in json.loads(root)}
    # a tap qemu already made is only enslaved
    h.run("ip", "tuntap", "add", "dev", "tapvm2", "mode", "tap")
    with PyrouteLinks(h.name) as backend:
        assert plug_tap("tapvm2", "br100", links=backend) == [
            "disabled IPv6 on tapvm2",
            "enslaved tapvm2 to br100",
            "set tapvm2 up",
        ]
        assert h.run("cat", "/proc/sys/net/ipv6/conf/tapvm2/disable_ipv6").strip() == "1"
        assert unplug("tapvm2", links=backend) == ["deleted tapvm2"]
