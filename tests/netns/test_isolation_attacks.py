"""The attack tier: raw frames from inside instances (and from the public network) against
a FlatDHCP host and a VLAN-over-VXLAN host. Each attack asserts that the victim is
unaffected, seen with an independent tool (its lease, its neighbour table, a sniffer in
its namespace, `ip`), and that the named drop counter grew (`nft -j list`). Where a
negative result could also mean a blind sniffer, a legitimate frame through the bridge's
segment is the control that the same sniffer does see.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest
from hostlab import Lab, eventually
from isolation_lab import OUTSIDE, PEER, PUBLIC_HOST, UNDERLAY, Site, Sniffer, flat_site, raw, vxlan_site
from lab_extra_vlan import dhcp_lease, plug_spy, set_elements
from nslab import World

WORLDS: dict[str, Callable[[Lab, World], Site]] = {"flatdhcp": flat_site, "vxlan": vxlan_site}


@pytest.fixture(params=sorted(WORLDS))
def site(request: pytest.FixtureRequest, lab: Lab, world: World) -> Iterator[Site]:
    yield WORLDS[request.param](lab, world)


def _grew(site: Site, counter: str, before: int, at_least: int, family: str = "bridge") -> None:
    now = site.counter(counter, family)
    assert now - before >= at_least, f"{counter} grew by {now - before}, expected >= {at_least}"


def _no_ipv6_taken(site: Site, bridge: str, prefix: str = "2001:db8:bad:") -> None:
    """Neither the host's bridge nor the victim has an address or route from the RA."""
    for ns, dev in ((site.host, bridge), (site.guests["victim"].ns, "eth0")):
        addrs = json.loads(ns.run("ip", "-6", "-j", "addr", "show", "dev", dev))
        assert not any(a["local"].startswith(prefix) for i in addrs for a in i.get("addr_info", [])), addrs
        routes = ns.run("ip", "-6", "route", "show", "default")
        assert "fe80::bad:1" not in routes, routes
    assert site.host.run("cat", f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").strip() == "1"


def _fresh_gateway_entry(site: Site) -> None:
    victim = site.guests["victim"]
    victim.ns.run("sysctl", "-q", "-w", "net.ipv4.neigh.eth0.locktime=0")
    assert victim.ns.ok("ping", "-c", "1", "-W", "2", victim.gateway)
    assert site.neigh(victim, victim.gateway) == site.bridge_mac(victim.bridge)


def test_l2_attacks_from_an_instance(site: Site, world: World) -> None:
    victim, attacker = site.guests["victim"], site.guests["attacker"]
    bridge, gw = victim.bridge, victim.gateway
    gw_mac = site.bridge_mac(bridge)
    assert site.neigh(victim, gw) == gw_mac

    # Rogue DHCP server, from sport 67 and from 6767: the victim never sees the offers,
    # while a frame through the segment (the control) reaches it.
    before = site.counter("drop-dhcp-server")
    sniff = Sniffer(victim.ns, "eth0", 3, "ROGUEOFFER")
    control = Sniffer(victim.ns, "eth0", 3, "SEGMENTOK")
    for sport in ("67", "6767"):
        raw(attacker.ns, "dhcp-server", "eth0", attacker.mac, attacker.address, sport, "ROGUEOFFER")
    site.segment("SEGMENTOK")
    assert sniff.count() == 0
    assert control.count() > 0
    _grew(site, "drop-dhcp-server", before, 6)
    lease = dhcp_lease(site.lab, victim.ns, tries=4)
    assert lease is not None and (lease["ip"], lease["serverid"], lease["router"]) == (victim.address, gw, gw)

    # Forged DHCPRELEASE and DHCPDECLINE carrying the victim's MAC in chaddr: dropped at the
    # bridge. The same with the attacker's own chaddr but the victim's client identifier
    # passes the bridge and dnsmasq ignores it (leases are keyed by MAC only).
    eventually(lambda: site.leased(victim.address), 15, what="victim leased")
    before = site.counter("drop-dhcp-chaddr")
    for kind in ("release", "decline"):
        raw(attacker.ns, "dhcp-client", "eth0", attacker.mac, attacker.address, gw_mac, gw, kind,
            victim.mac, victim.address, gw, victim.mac)  # fmt: skip
    _grew(site, "drop-dhcp-chaddr", before, 6)
    raw(attacker.ns, "dhcp-client", "eth0", attacker.mac, attacker.address, gw_mac, gw, "release",
        attacker.mac, victim.address, gw, victim.mac)  # fmt: skip
    # dnsmasq handles packets and lease events in order: once the attacker's own renewal
    # is recorded, anything the forgeries caused would have been too.
    assert dhcp_lease(site.lab, attacker.ns, tries=4) is not None
    eventually(lambda: site.leased(attacker.address), 15, what="attacker's renewal recorded")
    assert site.leased(victim.address)
    lease = dhcp_lease(site.lab, victim.ns, tries=4)  # a declined address would be refused
    assert lease is not None and lease["ip"] == victim.address

    # Router advertisements from an instance: dropped (only IPv4 and ARP leave a VIF).
    before = site.counter("drop-ethertype")
    raw(attacker.ns, "ra", "eth0", attacker.mac, "2001:db8:bad::/64")
    _grew(site, "drop-ethertype", before, 3)
    _no_ipv6_taken(site, bridge)

    # An unknown tap on the bridge: whatever it forges is dropped, and check names it. The
    # victim's gateway entry is fresh, and locktime 0 lets any ARP reply that arrives
    # overwrite it: an unchanged entry means the forgery never arrived.
    _fresh_gateway_entry(site)
    spy = world.ns("aspy")
    plug_spy(site.host, spy, bridge, "fa:16:3e:99:99:99")
    before = site.counter("drop-unknown-port")
    raw(spy, "arp-reply", "eth0", "fa:16:3e:99:99:99", gw)
    raw(spy, "ra", "eth0", "fa:16:3e:99:99:99", "2001:db8:bad::/64")
    _grew(site, "drop-unknown-port", before, 6)
    assert site.neigh(victim, gw) == gw_mac
    _no_ipv6_taken(site, bridge)
    res = site.check()
    assert res.returncode != 0 and "port spyh0 of bridge" in res.stdout + res.stderr, res

    # The instance deallocated while still plugged: its port is dropped until unplugged.
    site.lab.cli(site.conf, "instance", "deallocate", attacker.uuid)
    eventually(
        lambda: attacker.devname not in set_elements(site.host, "vif-ports", "bridge"), 20, what="VIF gone"
    )
    before = site.counter("drop-unknown-port")
    raw(attacker.ns, "arp-reply", "eth0", attacker.mac, gw)
    assert not attacker.ns.ok("ping", "-c", "2", "-i", "0.2", "-W", "1", gw)
    _grew(site, "drop-unknown-port", before, 5)
    assert site.neigh(victim, gw) == gw_mac
    res = site.check()
    assert f"port {attacker.devname} of bridge {bridge}" in res.stdout + res.stderr, res

    # The host itself is reachable from guests only for what they need.
    before = site.counter("drop-to-host", "ip")
    listener = site.lab.listen(site.host, 9999)
    assert not site.lab.connect(victim.ns, gw, 9999, timeout=1)
    assert listener.read_text() == ""
    _grew(site, "drop-to-host", before, 1, "ip")
    assert victim.ns.ok("ping", "-c", "1", "-W", "2", gw)  # the gateway still answers pings


def test_vxlan_injection_from_a_guest_and_from_outside(lab: Lab, world: World) -> None:
    site = vxlan_site(lab, world)
    victim, other = site.guests["victim"], site.guests["other"]
    vni = str(site.extra["vni"])
    gw_mac = site.bridge_mac(victim.bridge)
    _fresh_gateway_entry(site)

    before = site.counter("drop-vxlan-foreign", "ip")
    injected = Sniffer(victim.ns, "eth0", 4, "VXINJECT")
    control = Sniffer(victim.ns, "eth0", 4, "PEEROK")
    # Another project's guest, to its own gateway and to the host's underlay address, with
    # the victim project's VNI; an inner ARP reply claims the victim's gateway address.
    for target in (other.gateway, UNDERLAY):
        raw(other.ns, "vxlan", target, "4789", vni, other.mac, victim.gateway, "VXINJECT")
    # The public network, towards the host's public address.
    raw(
        site.extra["outside"],
        "vxlan",
        PUBLIC_HOST,
        "4789",
        vni,
        "02:00:00:00:66:01",
        victim.gateway,
        "VXINJECT",
    )
    # The control: a known peer, through the underlay, is still heard.
    site.segment("PEEROK")
    assert injected.count() == 0
    assert control.count() > 0
    _grew(site, "drop-vxlan-foreign", before, 18, "ip")
    assert site.neigh(victim, victim.gateway) == gw_mac
    [vx] = [p for p in json.loads(site.host.run("ip", "-j", "-d", "link", "show", "type", "vxlan"))
            if p["ifname"] == f"vx{vni}"]  # fmt: skip
    assert vx["linkinfo"]["info_data"]["learning"] is False
    fdb = json.loads(site.host.run("bridge", "-j", "fdb", "show", "dev", f"vx{vni}"))
    assert all(e.get("dst") in (None, PEER) for e in fdb), fdb  # no remote learnt from anyone

    # Guests do not route into the underlay.
    before = site.counter("drop-to-underlay", "ip")
    assert not other.ns.ok("ping", "-c", "2", "-i", "0.2", "-W", "1", PEER)
    _grew(site, "drop-to-underlay", before, 2, "ip")
    # ...while the public network still works for them (SNAT out pub0).
    listener = lab.listen(site.extra["outside"], 8080)
    assert lab.connect(other.ns, OUTSIDE, 8080)
    assert listener.read_text().split() == [PUBLIC_HOST]


def test_unplugging_either_instance_keeps_the_others_gateway(lab: Lab, world: World) -> None:
    """The bridge has a MAC of its own: removing any port (here the instance ports, in
    turn) leaves the gateway MAC the other guest cached valid, and not one ping is lost."""
    site = flat_site(lab, world)
    first, second = site.guests["victim"], site.guests["attacker"]
    gw_mac = site.bridge_mac(first.bridge)
    for pinger, leaving in ((first, second), (second, first)):
        assert pinger.ns.ok("ping", "-c", "1", "-W", "2", pinger.gateway)
        ping = pinger.ns.popen(
            "ping", "-i", "0.2", "-c", "20", "-W", "1", pinger.gateway,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert ping.stdout is not None
        head = ping.stdout.readline() + ping.stdout.readline()  # the banner, the first reply
        lab.cli(site.conf, "vif", "unplug", leaving.uuid, ns=site.host)
        assert ping.poll() is None, "the ping ended before the unplug: lengthen it"
        out, _ = ping.communicate(timeout=30)
        out = head + out
        assert " 0% packet loss" in out, out
        assert site.bridge_mac(first.bridge) == gw_mac
        lab.cli(site.conf, "vif", "plug", leaving.uuid, "--netns", leaving.ns.name, ns=site.host)
        lease = dhcp_lease(lab, leaving.ns, tries=4)
        assert lease is not None and lease["ip"] == leaving.address
