"""Worlds for the attack tier: a FlatDHCP host and a VLAN-over-VXLAN host, each with a
victim and an attacker instance on one bridge, plus a way to put a legitimate frame on the
bridge's segment (the control that proves a sniffer would have seen an attack).

Everything lives in namespaces the test made (nslab.World) and processes are ended by
the Lab, by PID.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostlab import PYTHON, Lab, eventually
from lab_extra_vlan import counter_packets, dhcp_lease, ipv4_of
from nslab import Netns, World

RAW = str(Path(__file__).with_name("rawframes.py"))
PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
UNDERLAY, PEER = "192.0.2.1", "192.0.2.2"
HOST = "atk1"
VICTIM = "c1111111-1111-4111-8111-111111111111"
PEER_INSTANCE = "c4444444-4444-4444-8444-444444444444"
ATTACKER = "c2222222-2222-4222-8222-222222222222"
OTHER = "c3333333-3333-4333-8333-333333333333"  # another project (VLAN world)


def raw(ns: Netns, *args: str) -> None:
    ns.run(PYTHON, RAW, *args, timeout=30)


@dataclass
class Guest:
    uuid: str
    ns: Netns
    mac: str
    address: str
    gateway: str
    devname: str
    bridge: str


class Sniffer:
    """Counts frames carrying a marker on one interface for a few seconds."""

    def __init__(self, ns: Netns, iface: str, seconds: float, marker: str) -> None:
        self.proc = ns.popen(PYTHON, RAW, "sniff", iface, str(seconds), marker, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        out, _ = self.proc.communicate(timeout=60)
        return int(out.strip())


@dataclass
class Site:
    lab: Lab
    host: Netns
    conf: Path
    guests: dict[str, Guest]
    segment: Callable[[str], None]  # send a harmless marker frame in through the segment
    extra: dict[str, Any]

    def counter(self, name: str, family: str = "bridge") -> int:
        return counter_packets(self.host, name, family)

    def bridge_mac(self, bridge: str) -> str:
        [link] = json.loads(self.host.run("ip", "-j", "link", "show", "dev", bridge))
        return str(link["address"])

    def neigh(self, guest: Guest, address: str) -> str:
        """The guest's neighbour entry for ``address`` (lladdr), read with ip."""
        entries = json.loads(guest.ns.run("ip", "-j", "neigh", "show", address, "dev", "eth0"))
        return str(entries[0].get("lladdr", "")) if entries else ""

    def leased(self, address: str) -> bool:
        rows = self.lab.cli_json(self.conf, "fixed", "list")
        return bool(next(r for r in rows if r["address"] == address)["leased"])

    def check(self) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(PYTHON).with_name("novanet")), "--config-file", str(self.conf)]
        argv += ["agent", "check", "--host", HOST]
        return subprocess.run(
            ["ip", "netns", "exec", self.host.name, *argv], capture_output=True, text=True, timeout=60
        )


def _guest(lab: Lab, world: World, conf: Path, host: Netns, uuid: str, project: str, tag: str) -> Guest:
    [vif] = lab.cli_json(conf, "instance", "allocate", uuid, "--project-id", project, "--host", HOST)
    subnet = vif["network"]["subnets"][0]
    return Guest(
        uuid,
        world.ns(tag),
        vif["address"],
        subnet["ips"][0]["address"],
        subnet["gateway"],
        vif["devname"],
        vif["network"]["bridge"],
    )


def _boot(site: Site) -> None:
    """Plug every guest, give each its lease, and let it reach its gateway once."""
    for g in site.guests.values():
        eventually(
            lambda g=g: any(a.startswith(g.gateway + "/") for a in ipv4_of(site.host, g.bridge)),
            30,
            what=f"gateway {g.gateway} on {g.bridge}",
        )
        site.lab.cli(site.conf, "vif", "plug", g.uuid, "--netns", g.ns.name, ns=site.host)
    for g in site.guests.values():
        lease = eventually(lambda g=g: dhcp_lease(site.lab, g.ns, tries=4), 40, what=f"lease of {g.uuid}")
        assert (lease["ip"], lease["router"]) == (g.address, g.gateway)
        assert g.ns.ok("ping", "-c", "1", "-W", "2", g.gateway)


def flat_site(lab: Lab, world: World) -> Site:
    """FlatDHCP: br100 with flat_interface fl0, whose far end is a LAN namespace."""
    outside, host, lan = world.ns("aout"), world.ns("ahost"), world.ns("alan")
    world.veth(host, "pub0", outside, "out0")
    world.veth(host, "fl0", lan, "lan0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    conf = lab.config(
        HOST,
        network_manager="flatdhcp",
        flat_network_bridge="br100",
        flat_interface="fl0",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        host=HOST,
        network_host=HOST,
        metadata_host="",
    )
    lab.cli(conf, "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/24")
    guests = {
        "victim": _guest(lab, world, conf, host, VICTIM, "p1", "avic"),
        "attacker": _guest(lab, world, conf, host, ATTACKER, "p1", "aatk"),
    }
    lab.start_agent(host, conf, HOST)
    lan_mac = json.loads(lan.run("ip", "-j", "link", "show", "dev", "lan0"))[0]["address"]
    site = Site(
        lab, host, conf, guests, lambda m: raw(lan, "marker", "lan0", lan_mac, m), {"outside": outside}
    )
    _boot(site)
    return site


def vxlan_site(lab: Lab, world: World) -> Site:
    """VLAN manager over VXLAN: project pa (victim, attacker) on br100/vx100, project pb
    (other) on br101/vx101; und0 leads to a peer host registered in the hosts table."""
    outside, host, peer = world.ns("vout"), world.ns("vhost"), world.ns("vpeer")
    world.veth(host, "pub0", outside, "out0")
    world.veth(host, "und0", peer, "und0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    host.run("ip", "addr", "add", f"{UNDERLAY}/24", "dev", "und0")
    peer.run("ip", "addr", "add", f"{PEER}/24", "dev", "und0")
    conf = lab.config(
        HOST,
        network_manager="vlan",
        vlan_segmentation="vxlan",
        vxlan_interface="und0",
        vxlan_local_ip=UNDERLAY,
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        vpn_ip=PUBLIC_HOST,
        host=HOST,
        network_host=HOST,
        metadata_host="",
    )
    lab.cli(
        conf, "network", "create", "--label", "v", "--fixed-range-v4", "10.30.0.0/16",
        "--num-networks", "2", "--network-size", "256",
    )  # fmt: skip
    guests = {
        "victim": _guest(lab, world, conf, host, VICTIM, "pa", "vvic"),
        "attacker": _guest(lab, world, conf, host, ATTACKER, "pa", "vatk"),
        "other": _guest(lab, world, conf, host, OTHER, "pb", "voth"),
    }
    assert guests["victim"].bridge == guests["attacker"].bridge != guests["other"].bridge
    # The peer host, as its agent would have registered it (the test owns this database),
    # with an instance on the victim's network: a host knows as VXLAN peers the hosts that
    # share its segments.
    with sqlite3.connect(str(lab.root / "novanet.sqlite")) as db:
        db.execute(
            "INSERT INTO hosts (name, underlay_address, created_at) VALUES (?, ?, ?)",
            ("peer1", PEER, time.strftime("%Y-%m-%d %H:%M:%S")),
        )
    lab.cli(conf, "instance", "allocate", PEER_INSTANCE, "--project-id", "pa", "--host", "peer1")
    lab.start_agent(host, conf, HOST)
    vni = int(guests["victim"].bridge.removeprefix("br"))

    def from_peer(marker: str) -> None:  # VXLAN from a known peer, through the underlay
        raw(peer, "vxlan", UNDERLAY, "4789", str(vni), "02:00:00:00:99:01", "10.30.255.254", marker)

    site = Site(lab, host, conf, guests, from_peer, {"outside": outside, "peer": peer, "vni": vni})
    _boot(site)
    return site
