"""The pyroute2 backend on the real kernel, inside namespaces each test creates.

Every check reads the kernel with iproute2 (``ip -j``, ``bridge -j``) or sends traffic,
never through the code under test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from novanet.host.model import Bridge, Segment
from novanet.host.netlink.realizer import (
    KernelFeatureMissing,
    PyrouteLinks,
    drift,
    ensure_bridges,
    remove_bridges,
)

if TYPE_CHECKING:  # the fixture's types; conftest is not importable as a module
    from nslab import Netns, World


def ip_json(ns: Netns, *argv: str) -> Any:
    return json.loads(ns.run("ip", "-j", *argv) or "[]")


def addrs(ns: Netns, dev: str) -> list[tuple[str, bool]]:
    """(cidr, secondary) of the IPv4 addresses of ``dev``, in kernel order."""
    infos = ip_json(ns, "-4", "addr", "show", "dev", dev)  # [] when it has none
    return [
        (f"{a['local']}/{a['prefixlen']}", bool(a.get("secondary"))) for i in infos for a in i["addr_info"]
    ]


def link(ns: Netns, dev: str) -> dict[str, Any]:
    [info] = ip_json(ns, "-d", "link", "show", "dev", dev)
    return info  # type: ignore[no-any-return]


def veth_inside(ns: Netns, name: str, peer: str) -> None:
    """A veth pair with both ends in ``ns`` (a stand-in for a NIC: no dummy module here)."""
    ns.run("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
    ns.run("ip", "link", "set", name, "up")
    ns.run("ip", "link", "set", peer, "up")


def python_in(ns: Netns, code: str) -> str:
    return ns.run(sys.executable, "-c", code)


def test_bridges_vxlan_and_nic_on_the_kernel(world: World) -> None:
    h = world.ns("h")
    veth_inside(h, "u0", "u0p")
    h.run("ip", "addr", "add", "192.0.2.1/24", "dev", "u0")
    veth_inside(h, "eth1", "eth1p")
    h.run("ip", "addr", "add", "198.51.100.10/24", "dev", "eth1")
    h.run("ip", "route", "add", "default", "via", "198.51.100.1", "dev", "eth1")
    vx = Segment("vxlan", "vx100", "u0", 100, "192.0.2.1", ("192.0.2.2", "192.0.2.3"))
    br100 = Bridge("br100", ("10.0.0.1/24", "10.0.0.2/24"), vx)
    br1 = Bridge("br1", ("10.1.0.1/24",), Segment("nic", "eth1"))
    # a stale address that would be primary of the subnet: must go, and 10.0.0.1 lead
    h.run("ip", "link", "add", "br100", "type", "bridge")
    h.run("ip", "addr", "add", "10.0.0.9/24", "dev", "br100")

    with PyrouteLinks(h.name) as backend:
        changes = ensure_bridges(backend, [br100, br1])
        assert "removed foreign address 10.0.0.9/24 from br100" in changes
        assert ensure_bridges(backend, [br100, br1]) == []
        assert drift([br100, br1], backend) == []

    br = link(h, "br100")
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["linkinfo"]["info_data"]["stp_state"] == 0
    assert br["linkinfo"]["info_data"]["forward_delay"] == 0
    assert "UP" in br["flags"]
    assert addrs(h, "br100") == [("10.0.0.1/24", False), ("10.0.0.2/24", True)]

    vxl = link(h, "vx100")
    data = vxl["linkinfo"]["info_data"]
    assert (data["id"], data["local"], data["port"], data["link"], data["learning"]) == (
        100,
        "192.0.2.1",
        4789,
        "u0",
        False,  # learning off: remotes come from the database only
    )
    for dev in ("br100", "vx100"):  # IPv6 off on what novanet owns, read by the kernel's sysctl
        assert h.run("cat", f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").strip() == "1"
        assert h.run("cat", f"/proc/sys/net/ipv6/conf/{dev}/accept_ra").strip() == "0"
    assert vxl["master"] == "br100" and "UP" in vxl["flags"]
    fdb = json.loads(h.run("bridge", "-j", "fdb", "show", "dev", "vx100"))
    assert sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00") == ["192.0.2.2", "192.0.2.3"]

    assert link(h, "eth1")["master"] == "br1"
    assert addrs(h, "eth1") == []
    assert addrs(h, "br1") == [("10.1.0.1/24", False), ("198.51.100.10/24", False)]
    [default] = ip_json(h, "route", "show", "default")
    assert (default["dev"], default["gateway"]) == ("br1", "198.51.100.1")

    # remotes converge; a second pass is a no-op
    vx2 = Segment("vxlan", "vx100", "u0", 100, "192.0.2.1", ("192.0.2.3", "192.0.2.4"))
    with PyrouteLinks(h.name) as backend:
        assert sorted(ensure_bridges(backend, [Bridge(br100.name, br100.addresses, vx2)])) == [
            "added flood remote 192.0.2.4 on vx100",
            "removed flood remote 192.0.2.2 from vx100",
        ]
    fdb = json.loads(h.run("bridge", "-j", "fdb", "show", "dev", "vx100"))
    assert sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00") == ["192.0.2.3", "192.0.2.4"]

    with PyrouteLinks(h.name) as backend:
        assert remove_bridges(backend, ["br100", "br1"]) == [
            "deleted vxlan vx100",
            "deleted bridge br100",
            "released eth1 from br1",
            "deleted bridge br1",
        ]
        assert remove_bridges(backend, ["br100", "br1"]) == []
    names = {i["ifname"] for i in ip_json(h, "link", "show")}
    assert not names & {"br100", "vx100", "br1"}
    assert "master" not in link(h, "eth1")


def test_two_hosts_reach_each_other_over_vxlan(world: World) -> None:
    a, b = world.ns("va"), world.ns("vb")
    world.veth(a, "ul0", b, "ul0")
    a.run("ip", "addr", "add", "192.0.2.1/24", "dev", "ul0")
    b.run("ip", "addr", "add", "192.0.2.2/24", "dev", "ul0")
    for ns, me, peer, gw in (
        (a, "192.0.2.1", "192.0.2.2", "10.9.0.1/24"),
        (b, "192.0.2.2", "192.0.2.1", "10.9.0.2/24"),
    ):
        bridge = Bridge("br100", (gw,), Segment("vxlan", "vx100", "ul0", 100, me, (peer,)))
        with PyrouteLinks(ns.name) as backend:
            ensure_bridges(backend, [bridge])
    a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.9.0.2", timeout=30)
    b.run("ping", "-c", "1", "-W", "2", "10.9.0.1", timeout=30)
    # the frames did cross the underlay as VXLAN (received on vx100), and with learning off
    # no remote was learnt from them
    [stats] = json.loads(a.run("ip", "-s", "-j", "link", "show", "dev", "vx100"))
    assert stats["stats64"]["rx"]["packets"] >= 3
    fdb = json.loads(a.run("bridge", "-j", "fdb", "show", "dev", "vx100"))
    assert all(e["mac"] == "00:00:00:00:00:00" for e in fdb if e.get("dst")), fdb


def local_routes(ns: Netns) -> list[dict[str, Any]]:
    return [r for r in ip_json(ns, "-4", "route", "show", "table", "local") if r.get("type") == "local"]


def test_floating_ips_as_local_routes_forwarding_and_gratuitous_arp(world: World) -> None:
    """A floating IP is a local route in table local (protocol 78), no address: the host
    answers ARP for it and accepts its packets, announces it, and an address of an older
    version turns into the route without a gap."""
    h, out = world.ns("fh"), world.ns("fo")
    world.veth(h, "pub0", out, "ext0")
    h.run("ip", "addr", "add", "203.0.113.1/24", "dev", "pub0")
    out.run("ip", "addr", "add", "203.0.113.254/24", "dev", "ext0")
    out.run("sysctl", "-qw", "net.ipv4.conf.ext0.arp_accept=1")
    with PyrouteLinks(h.name) as backend:
        backend.set_local_routes("pub0", ["203.0.113.5", "203.0.113.6"], [])
        backend.set_local_routes("pub0", ["203.0.113.5"], ["203.0.113.9"])  # present / absent: fine
        assert backend.local_routes() == {"pub0": {"203.0.113.5", "203.0.113.6"}}
    ours = {r["dst"]: r for r in local_routes(h) if r.get("protocol") == "78"}
    assert set(ours) == {"203.0.113.5", "203.0.113.6"}
    assert all(r["dev"] == "pub0" and r["scope"] == "host" and r["prefsrc"] == a for a, r in ours.items())
    assert addrs(h, "pub0") == [("203.0.113.1/24", False)]  # no address for them
    out.run("ping", "-c", "1", "-W", "2", "203.0.113.5", timeout=30)  # ARP answered, packet accepted

    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    assert (
        python_in(
            h, "from novanet.host.netlink.realizer import enable_forwarding; print(enable_forwarding())"
        )
        == "True\n"
    )
    assert h.run("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward

    # arping binds to the floating IP: a local route makes it bindable, as an address would
    python_in(
        h,
        "from novanet.host.netlink.realizer import gratuitous_arp; gratuitous_arp('pub0', '203.0.113.6', 2)",
    )
    mac = link(h, "pub0")["address"]
    neigh = ip_json(out, "neigh", "show", "203.0.113.6", "dev", "ext0")
    assert [n.get("lladdr") for n in neigh] == [mac]

    # An older version's /32 address: the route replaces the kernel's local route of it,
    # and deleting the address then leaves ours in place.
    h.run("ip", "addr", "add", "203.0.113.7/32", "dev", "pub0")
    with PyrouteLinks(h.name) as backend:
        backend.set_local_routes("pub0", ["203.0.113.7"], [])
        backend.set_host_addresses("pub0", [], ["203.0.113.7/32"])
    assert addrs(h, "pub0") == [("203.0.113.1/24", False)]
    assert "203.0.113.7" in {r["dst"] for r in local_routes(h) if r.get("protocol") == "78"}
    out.run("ping", "-c", "1", "-W", "2", "203.0.113.7", timeout=30)

    # down and up again: the routes stay (as addresses would)
    h.run("ip", "link", "set", "pub0", "down")
    h.run("ip", "link", "set", "pub0", "up")
    with PyrouteLinks(h.name) as backend:
        assert backend.local_routes() == {"pub0": {"203.0.113.5", "203.0.113.6", "203.0.113.7"}}
        backend.set_local_routes("pub0", [], ["203.0.113.5", "203.0.113.6", "203.0.113.7"])
        assert backend.local_routes() == {}
    assert not [r for r in local_routes(h) if r.get("protocol") == "78"]
    out.run("ip", "neigh", "flush", "dev", "ext0")
    assert not out.ok("ping", "-c", "1", "-W", "1", "203.0.113.5")


def test_vlan_segment_needs_8021q(world: World) -> None:
    h = world.ns("vl")
    veth_inside(h, "eth2", "eth2p")
    bridge = Bridge("br42", ("10.42.0.1/24",), Segment("vlan", "vlan42", parent="eth2", ident=42))
    with PyrouteLinks(h.name) as backend:
        try:
            ensure_bridges(backend, [bridge])
        except KernelFeatureMissing as e:
            # confirm with iproute2 that the kernel, not our code, refuses
            assert not h.ok("ip", "link", "add", "link", "eth2", "name", "vlan43", "type", "vlan", "id", "43")
            pytest.skip(f"{e} (802.1Q vlan devices)")
    data = link(h, "vlan42")
    assert data["linkinfo"]["info_data"]["id"] == 42
    assert data["master"] == "br42" and data["link"] == "eth2"
