"""novanet's nftables tables on the real kernel, inside namespaces made by each test.

The world of the traffic tests (all of it inside namespaces, see conftest.py):

    outside (203.0.113.2/24) --veth-- host: pub0 203.0.113.1/24 (+ floating .10, .11 /32)
                                       br100 10.0.0.1/24, ports vif5 vif6 vif7
                                         |       |       |
                                        i1      i2      i3
                                   10.0.0.5  10.0.0.6  10.0.0.7
                              floating .10   (none)  floating .11

Everything is verified from the outside of the code under test: connections between
namespaces, what the listening end saw as its peer, ``nft -j list`` counters.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from novanet.host.model import Bridge, FloatingNat, HostState, NatState, VifFilter, VpnForward
from novanet.host.nft.realizer import NftError, RealNft, delta, drift, full_sync

if TYPE_CHECKING:  # the fixture's types; conftest is not importable as a module
    from nslab import Netns, World

PY = sys.executable
GATEWAY = "10.0.0.1"
RSIP = "203.0.113.1"
OUTSIDE = "203.0.113.2"

# --- little programs run inside namespaces --------------------------------------------------

SERVER = r"""
import socket, sys
kind, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.settimeout(timeout)
if kind == "tcp":
    s.listen(4)
print("ready", flush=True)
try:
    if kind == "tcp":
        c, peer = s.accept()
        c.sendall(b"pong")
        c.close()
    else:
        data, peer = s.recvfrom(2048)
        s.sendto(b"pong", peer)
except socket.timeout:
    print("timeout", flush=True)
    sys.exit(3)
print(peer[0], peer[1], flush=True)
"""

CLIENT = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sport = int(sys.argv[4]) if len(sys.argv) > 4 else 0
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(3)
if sport:
    s.bind(("", sport))
if kind == "tcp":
    s.connect((host, port))
    data = s.recv(16)
else:
    s.sendto(b"ping", (host, port))
    data = s.recvfrom(16)[0]
print(data.decode(), flush=True)
"""

# Sends one Ethernet frame; with a 3rd argument, waits for an ARP reply from that address.
RAW = r"""
import socket, sys, time
ifname, frame = sys.argv[1], bytes.fromhex(sys.argv[2])
want = socket.inet_aton(sys.argv[3]) if len(sys.argv) > 3 else None
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0))
s.send(frame)
if want is None:
    sys.exit(0)
s.settimeout(0.2)
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    try:
        data = s.recv(2048)
    except socket.timeout:
        continue
    if data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02" and data[28:32] == want:
        print("reply", flush=True)
        sys.exit(0)
sys.exit(1)
"""


def serve(ns: Netns, kind: str, host: str, port: int, timeout: float = 8) -> subprocess.Popen[str]:
    proc = ns.popen(PY, "-c", SERVER, kind, host, str(port), str(timeout), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # bounded: the server gives up after `timeout`
    assert line == "ready", f"server in {ns.name} did not start: {line!r}"
    return proc


def peer_of(proc: subprocess.Popen[str]) -> str | None:
    """The address the server saw its client come from, or None if nobody came."""
    out, _ = proc.communicate(timeout=15)
    lines = out.split()
    return None if proc.returncode != 0 else lines[0]


def connect(ns: Netns, kind: str, host: str, port: int, sport: int | None = None) -> bool:
    argv = [PY, "-c", CLIENT, kind, host, str(port)] + ([str(sport)] if sport else [])
    res = subprocess.run(["ip", "netns", "exec", ns.name, *argv], capture_output=True, text=True, timeout=15)
    return res.returncode == 0 and res.stdout.strip() == "pong"


def seen_as(
    client: Netns, server: Netns, dst: str, port: int, kind: str = "tcp", bind: str = "0.0.0.0"
) -> str | None:
    """Connect from ``client`` to ``dst:port``: the source address ``server`` saw, None if
    the connection failed."""
    proc = serve(server, kind, bind, port)
    ok = connect(client, kind, dst, port)
    peer = peer_of(proc)  # bounded by the server's own timeout
    return peer if ok else None


def pings(ns: Netns, dst: str, *extra: str) -> bool:
    return ns.ok("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", *extra, dst, timeout=15)


def listing(ns: Netns) -> dict[str, Any]:
    return json.loads(ns.run("nft", "-j", "list", "ruleset"))  # type: ignore[no-any-return]


def elems(ruleset: dict[str, Any], family: str, name: str) -> list[Any]:
    for item in ruleset["nftables"]:
        for kind in ("set", "map"):
            obj = item.get(kind)
            if obj and obj["family"] == family and obj["table"] == "novanet" and obj["name"] == name:
                return obj.get("elem", [])  # type: ignore[no-any-return]
    raise AssertionError(f"{family} novanet {name} is not listed")


def counted(ns: Netns, name: str, family: str = "bridge") -> int:
    out = json.loads(ns.run("nft", "-j", "list", "counter", family, "novanet", name))
    (counter,) = [i["counter"] for i in out["nftables"] if "counter" in i]
    return int(counter["packets"])


def without_handles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_handles(v) for k, v in node.items() if k not in ("handle", "metainfo")}
    if isinstance(node, list):
        return [without_handles(v) for v in node]
    return node


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_frame(eth_src: str, sender_mac: str, sender_ip: str, target_ip: str) -> str:
    """An ARP request (who-has target_ip tell sender_ip), broadcast, as hex."""
    frame = mac_bytes("ff:ff:ff:ff:ff:ff") + mac_bytes(eth_src) + b"\x08\x06"
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
    frame += mac_bytes(sender_mac) + ipaddress.IPv4Address(sender_ip).packed
    frame += b"\x00" * 6 + ipaddress.IPv4Address(target_ip).packed
    return frame.ljust(60, b"\x00").hex()


# --- the world ------------------------------------------------------------------------------


@dataclass
class Topo:
    host: Netns
    outside: Netns
    inst: dict[str, Netns]
    macs: dict[str, str]
    state: HostState
    nft: RealNft


@pytest.fixture
def pinned(world: World) -> Iterator[Callable[[str], Netns]]:
    """``world.ns`` plus a sleeping process inside each namespace until the test ends.

    The shared sweeper of a pytest session started meanwhile (by anyone, on this machine)
    removes every ``nvt-*`` namespace without processes, which ours are between two
    commands; a resident process makes them visibly in use.
    """
    holders: list[subprocess.Popen[str]] = []

    def make(role: str) -> Netns:
        ns = world.ns(role)
        holders.append(ns.popen("sleep", "3600", stdout=subprocess.DEVNULL))
        return ns

    yield make
    for proc in holders:
        proc.kill()
        proc.wait(timeout=10)


def build(new_ns: Callable[[str], Netns], world: World) -> Topo:
    host, outside = new_ns("nfth"), new_ns("nfto")
    world.veth(host, "pub0", outside, "up0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "up0")
    for cidr in (f"{RSIP}/24", "203.0.113.10/32", "203.0.113.11/32"):
        host.run("ip", "addr", "add", cidr, "dev", "pub0")
    host.run("ip", "link", "add", "br100", "type", "bridge", "forward_delay", "0", "stp_state", "0")
    host.run("ip", "addr", "add", f"{GATEWAY}/24", "dev", "br100")
    host.run("ip", "link", "set", "br100", "up")
    host.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")  # inside the host namespace only
    inst: dict[str, Netns] = {}
    macs: dict[str, str] = {}
    vifs = []
    for name, n in (("i1", 5), ("i2", 6), ("i3", 7)):
        ns = new_ns(f"nft{name}")
        # no IPv6 chatter from instances: the ethertype counter then counts only our frames
        ns.run("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        ns.run("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        mac = f"02:00:00:00:00:{n:02x}"
        world.veth(host, f"vif{n}", ns, "eth0")
        host.run("ip", "link", "set", f"vif{n}", "master", "br100")
        ns.run("ip", "link", "set", "eth0", "address", mac)
        ns.run("ip", "addr", "add", f"10.0.0.{n}/24", "dev", "eth0")
        ns.run("ip", "route", "add", "default", "via", GATEWAY)
        inst[name], macs[name] = ns, mac
        vifs.append(VifFilter(f"vif{n}", "br100", mac, (f"10.0.0.{n}",)))
    state = HostState(
        host="h1",
        bridges=(Bridge("br100", (f"{GATEWAY}/24",)),),
        nat=NatState(
            public_interface="pub0",
            routing_source_ip=RSIP,
            snat_ranges=("10.0.0.0/24",),
            no_snat_destinations=(f"{GATEWAY}/32",),
            metadata_host=GATEWAY,
            metadata_port=41775,
            floating=(
                FloatingNat("203.0.113.10", "10.0.0.5", "pub0"),
                FloatingNat("203.0.113.11", "10.0.0.7", "pub0"),
            ),
            vpn=(VpnForward(RSIP, 41194, "10.0.0.6"),),
        ),
        vifs=tuple(vifs),
    )
    nft = RealNft(host.name)
    nft.apply(full_sync(state))
    return Topo(host, outside, inst, macs, state, nft)


def sample_state(floating: int = 2) -> HostState:
    return HostState(
        host="h1",
        bridges=(Bridge("br100"), Bridge("br101")),
        nat=NatState(
            public_interface="pub0",
            routing_source_ip=RSIP,
            snat_ranges=("10.0.0.0/24", "10.0.1.0/24"),
            no_snat_destinations=("192.0.2.0/24",),
            force_snat_ranges=("198.51.100.0/24",),
            metadata_host=GATEWAY,
            floating=tuple(
                FloatingNat(f"203.0.113.{10 + i}", f"10.0.0.{5 + i}", "pub0") for i in range(floating)
            ),
            vpn=(VpnForward(RSIP, 41194, "10.0.0.2"),),
        ),
        vifs=(VifFilter("vif5", "br100", "02:00:00:00:00:05", ("10.0.0.5",)),),
    )


# --- transactions on the kernel ----------------------------------------------------------------


def test_full_sync_delta_idempotence_and_drift(pinned: Callable[[str], Netns]) -> None:
    host = pinned("nfth")
    # somebody else's table, which a full sync must leave alone
    host.run("nft", "add", "table", "inet", "other")
    host.run("nft", "add", "chain", "inet", "other", "c", "{ type filter hook input priority 0 ; }")
    host.run("nft", "add", "rule", "inet", "other", "c", "counter")
    nft = RealNft(host.name)
    a = sample_state()
    nft.apply(full_sync(a))
    first = listing(host)
    assert ["203.0.113.10", "10.0.0.5"] in elems(first, "ip", "floating-dnat")
    assert ["10.0.0.6", "203.0.113.11"] in elems(first, "ip", "floating-snat")
    assert [{"concat": [RSIP, 41194]}, "10.0.0.2"] in elems(first, "ip", "vpn-dnat")
    assert elems(first, "ip", "snat-ranges") == [{"prefix": {"addr": "10.0.0.0", "len": 23}}]
    assert sorted(elems(first, "ip", "bridges")) == ["br100", "br101"]
    assert elems(first, "bridge", "vif-macs") == [{"concat": ["vif5", "02:00:00:00:00:05"]}]
    tables = [(i["table"]["family"], i["table"]["name"]) for i in first["nftables"] if "table" in i]
    assert sorted(tables) == [("bridge", "novanet"), ("inet", "other"), ("ip", "novanet")]

    nft.apply(full_sync(a))  # again: same ruleset, nothing doubled, the other table intact
    assert without_handles(listing(host)) == without_handles(first)
    assert drift(a, nft) == []

    assert a.nat is not None
    moved = (FloatingNat("203.0.113.10", "10.0.0.9", "pub0"), FloatingNat("203.0.113.12", "10.0.0.7", "pub0"))
    b = dataclasses.replace(a, nat=dataclasses.replace(a.nat, floating=moved), vifs=())
    d = delta(a, b)
    assert not any("table" in next(iter(c.values())) for c in d)
    nft.apply(d)
    after = listing(host)
    assert sorted(map(tuple, elems(after, "ip", "floating-dnat"))) == [
        ("203.0.113.10", "10.0.0.9"),
        ("203.0.113.12", "10.0.0.7"),
    ]
    assert elems(after, "bridge", "vif-ports") == []
    assert drift(b, nft) == []
    assert drift(a, nft) != []

    # an atomic refusal: the add before the failing delete is not applied either
    ref = {"family": "ip", "table": "novanet", "name": "floating-dnat"}
    refused = [
        {"add": {"element": {**ref, "elem": [["203.0.113.50", "10.0.0.50"]]}}},
        {"delete": {"element": {**ref, "elem": ["198.51.100.1"]}}},
    ]
    with pytest.raises(NftError, match="No such file or directory"):
        nft.apply(refused)
    assert without_handles(listing(host)) == without_handles(after)

    # an outside edit and an outside flush are seen, and a full sync repairs them
    host.run("nft", "delete", "element", "ip", "novanet", "floating-dnat", "{ 203.0.113.12 }")
    host.run("nft", "add", "rule", "ip", "novanet", "filter-input", "counter")
    assert drift(b, nft) == [
        "map ip novanet floating-dnat: 1 missing: 203.0.113.12 : 10.0.0.7",
        "chain ip novanet filter-input: 8 rules, expected 7; unexpected: '<rule without comment>'",
    ]
    assert nft.tables_present()
    host.run("nft", "flush", "ruleset")
    assert not nft.tables_present()
    assert drift(b, nft) == ["table ip novanet is missing", "table bridge novanet is missing"]
    nft.apply(full_sync(b))
    assert drift(b, nft) == []
    assert nft.tables_present()


def test_scale_sanity(pinned: Callable[[str], Netns]) -> None:
    """Not timed: 10,000 floating IPs and 10,000 VIFs apply, and one more is a small delta."""
    host = pinned("nfth")
    nft = RealNft(host.name)
    n = 10_000
    fixed, floating = ipaddress.IPv4Address("10.128.0.0"), ipaddress.IPv4Address("100.64.0.0")
    state = HostState(
        host="h1",
        bridges=(Bridge("br100"),),
        nat=NatState(
            "pub0",
            RSIP,
            snat_ranges=("10.128.0.0/16",),
            floating=tuple(FloatingNat(str(floating + i), str(fixed + i), "pub0") for i in range(n)),
        ),
        vifs=tuple(
            VifFilter(f"tap{i}", "br100", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", (str(fixed + i),))
            for i in range(n)
        ),
    )
    t0 = time.perf_counter()
    nft.apply(full_sync(state))
    t1 = time.perf_counter()
    assert state.nat is not None
    one_more = (*state.nat.floating, FloatingNat("198.51.100.1", "10.128.99.1", "pub0"))
    more = dataclasses.replace(state, nat=dataclasses.replace(state.nat, floating=one_more))
    d = delta(state, more)
    t2 = time.perf_counter()
    nft.apply(d)
    t3 = time.perf_counter()
    print(
        f"\nfull sync 10k+10k: {t1 - t0:.2f}s; one-element delta: render {t2 - t1:.3f}s, apply {t3 - t2:.3f}s"
    )
    assert len(d) == 3
    ruleset = listing(host)
    assert len(elems(ruleset, "ip", "floating-dnat")) == n + 1
    assert len(elems(ruleset, "bridge", "vif-ips")) == n
    assert sum(1 for i in ruleset["nftables"] if "rule" in i) == sum(
        1 for c in full_sync(state) if "rule" in c.get("add", {})
    )


# --- real traffic ------------------------------------------------------------------------------


def test_floating_ip_and_snat(world: World, pinned: Callable[[str], Netns]) -> None:
    t = build(pinned, world)
    i1, i2, i3 = t.inst["i1"], t.inst["i2"], t.inst["i3"]
    # the outside reaches the instance through its floating IP and is seen as itself
    assert seen_as(t.outside, i1, "203.0.113.10", 41080) == OUTSIDE
    # the instance goes out as its floating IP, one without as routing_source_ip
    assert seen_as(i1, t.outside, OUTSIDE, 41081) == "203.0.113.10"
    assert seen_as(i2, t.outside, OUTSIDE, 41082) == RSIP
    # instances reaching each other by floating IP: the reply comes back through the host
    assert seen_as(i3, i1, "203.0.113.10", 41083) == "203.0.113.11"
    assert seen_as(i2, i1, "203.0.113.10", 41084) == RSIP
    # and directly by fixed IP, without any NAT
    assert seen_as(i2, i1, "10.0.0.5", 41085) == "10.0.0.6"

    # a partial sync that takes the floating IP away from i1
    assert t.state.nat is not None
    without = dataclasses.replace(
        t.state, nat=dataclasses.replace(t.state.nat, floating=t.state.nat.floating[1:])
    )
    t.nft.apply(delta(t.state, without))
    assert seen_as(i1, t.outside, OUTSIDE, 41086) == RSIP
    proc = serve(i1, "tcp", "0.0.0.0", 41087, timeout=3)
    assert not connect(t.outside, "tcp", "203.0.113.10", 41087)
    assert peer_of(proc) is None
    assert drift(without, t.nft) == []


def test_metadata_and_vpn(world: World, pinned: Callable[[str], Netns]) -> None:
    t = build(pinned, world)
    i2 = t.inst["i2"]
    # metadata: 169.254.169.254:80 reaches metadata_host:metadata_port, from the fixed IP
    proc = serve(t.host, "tcp", GATEWAY, 41775)
    assert connect(i2, "tcp", "169.254.169.254", 80)
    assert peer_of(proc) == "10.0.0.6"
    # cloudpipe: udp public_address:public_port -> private_address:1194
    proc = serve(i2, "udp", "0.0.0.0", 1194)
    assert connect(t.outside, "udp", RSIP, 41194)
    assert peer_of(proc) == OUTSIDE


def test_anti_spoofing(world: World, pinned: Callable[[str], Netns]) -> None:
    t = build(pinned, world)
    i1, i2, host = t.inst["i1"], t.inst["i2"], t.host
    mac = t.macs["i1"]
    assert pings(i1, GATEWAY)
    assert pings(i2, GATEWAY)

    # forged source IP (the gateway's MAC is known, so only the IP packet is forged)
    bridge_mac = json.loads(host.run("ip", "-j", "link", "show", "br100"))[0]["address"]
    i1.run("ip", "neigh", "replace", GATEWAY, "lladdr", bridge_mac, "dev", "eth0", "nud", "permanent")
    i1.run("ip", "addr", "add", "10.0.0.99/32", "dev", "eth0")
    before = counted(host, "drop-ip-spoof")
    assert not pings(i1, GATEWAY, "-I", "10.0.0.99")
    assert counted(host, "drop-ip-spoof") > before
    i1.run("ip", "addr", "del", "10.0.0.99/32", "dev", "eth0")
    assert pings(i1, GATEWAY)

    # forged ARP: another sender IP, or another sender MAC, gets no answer
    raw = ["ip", "netns", "exec", i1.name, PY, "-c", RAW, "eth0"]

    def arp(eth_src: str, sender_mac: str, sender_ip: str) -> bool:
        frame = arp_frame(eth_src, sender_mac, sender_ip, GATEWAY)
        res = subprocess.run([*raw, frame, GATEWAY], capture_output=True, text=True, timeout=15)
        return res.returncode == 0

    assert arp(mac, mac, "10.0.0.5")  # the honest request is answered
    before = counted(host, "drop-arp-spoof")
    assert not arp(mac, mac, "10.0.0.6")  # i2's address
    assert counted(host, "drop-arp-spoof") == before + 1
    assert not arp(mac, "02:00:00:00:00:ee", "10.0.0.5")
    assert counted(host, "drop-arp-spoof") == before + 2
    learned = json.loads(host.run("ip", "-j", "neigh", "show", "dev", "br100"))
    assert not [n for n in learned if n.get("dst") == "10.0.0.6" and n.get("lladdr") == mac]

    # forged MAC: nothing from the port gets through
    before = counted(host, "drop-mac-spoof")
    i1.run("ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
    assert not pings(i1, GATEWAY)
    assert counted(host, "drop-mac-spoof") > before
    i1.run("ip", "link", "set", "eth0", "address", mac)
    assert pings(i1, GATEWAY)

    # a DHCP server on an instance port is silenced; other UDP passes (to the neighbour:
    # the host itself takes only DHCP, DNS, pings and DNATed flows from guests)
    before = counted(host, "drop-dhcp-server")
    proc = serve(i2, "udp", "10.0.0.6", 41068, timeout=3)
    assert not connect(i1, "udp", "10.0.0.6", 41068, sport=67)
    assert peer_of(proc) is None
    assert counted(host, "drop-dhcp-server") > before
    proc = serve(i2, "udp", "10.0.0.6", 41068)
    assert connect(i1, "udp", "10.0.0.6", 41068, sport=41067)
    assert peer_of(proc) == "10.0.0.5"
    before = counted(host, "drop-to-host", "ip")
    proc = serve(host, "udp", GATEWAY, 41069, timeout=3)
    assert not connect(i1, "udp", GATEWAY, 41069, sport=41067)
    assert peer_of(proc) is None
    assert counted(host, "drop-to-host", "ip") > before

    # DHCP discovery from 0.0.0.0 is let through
    proc = serve(host, "udp", "0.0.0.0", 67)
    i1.run(
        "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "2", "-T", "1", "-s", "/bin/true", check=False
    )
    assert peer_of(proc) == "0.0.0.0"

    # other ethertypes (IPv6 here) are dropped and counted
    before = counted(host, "drop-ethertype")
    ipv6 = mac_bytes("33:33:00:00:00:01") + mac_bytes(mac) + b"\x86\xdd" + bytes(40)
    subprocess.run([*raw, ipv6.ljust(60, b"\x00").hex()], check=True, capture_output=True, timeout=15)
    assert counted(host, "drop-ethertype") == before + 1

    # the neighbour port was never affected
    assert pings(i2, GATEWAY)
    assert drift(t.state, t.nft) == []

    # control: once a partial sync lets i1's port carry 10.0.0.99 too, that source gets through
    wider = tuple(
        dataclasses.replace(v, addresses=(*v.addresses, "10.0.0.99")) if v.port == "vif5" else v
        for v in t.state.vifs
    )
    allowed = dataclasses.replace(t.state, vifs=wider)
    t.nft.apply(delta(t.state, allowed))
    i1.run("ip", "addr", "add", "10.0.0.99/32", "dev", "eth0")
    before = counted(host, "drop-ip-spoof")
    assert pings(i1, GATEWAY, "-I", "10.0.0.99")
    assert counted(host, "drop-ip-spoof") == before

    # ...and once a partial sync drops i1's filter altogether, its port is unknown: every
    # frame from it is dropped (fail closed), not let through unfiltered
    unfiltered = dataclasses.replace(t.state, vifs=tuple(v for v in t.state.vifs if v.port != "vif5"))
    t.nft.apply(delta(allowed, unfiltered))
    before = counted(host, "drop-unknown-port")
    assert not pings(i1, GATEWAY)
    assert counted(host, "drop-unknown-port") > before
    assert pings(i2, GATEWAY)
