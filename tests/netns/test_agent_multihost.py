"""Multi-host end to end: two compute hosts, each with its own real agent, sharing one
database; every host is gateway, DHCP server and NAT for its own instances only.

- FlatDHCP multi-host: the hosts' flat bridges joined by an underlay veth (und0), an
  outside network bridging both hosts' public interfaces.
- VLAN multi-host with project segments carried over VXLAN on und0 (this kernel has no
  802.1Q), two projects that must not reach each other.
- The cloudpipe VPN forward of a multi-host VLAN network belongs on its VPN host only.

Verification is independent of the code under test: `ip -j`, `bridge -j fdb`, `nft -j`,
busybox udhcpc, a raw-socket DHCP sniffer in each instance, ping and TCP.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hostlab import PYTHON, Lab, eventually, floating_local, udhcpc
from nslab import Netns, World

pytestmark = [pytest.mark.netns, pytest.mark.e2e]

OUTSIDE = "203.0.113.254"
PUBLIC = {"h1": "203.0.113.1", "h2": "203.0.113.2"}
UNDERLAY = {"h1": "192.0.2.1", "h2": "192.0.2.2"}
FLOATING_RANGE = "203.0.113.16/29"

VM1 = "11111111-1111-4111-8111-111111111111"
VM2 = "22222222-2222-4222-8222-222222222222"
A1 = "a1a1a1a1-0000-4000-8000-000000000001"
A2 = "a2a2a2a2-0000-4000-8000-000000000002"
B1 = "b1b1b1b1-0000-4000-8000-000000000001"
B2 = "b2b2b2b2-0000-4000-8000-000000000002"

# udhcpc event script: configure the lease like a guest and record what the server said.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    printf '{"ip": "%s", "router": "%s", "serverid": "%s", "mask": "%s"}\\n' \\
      "$ip" "$router" "$serverid" "$mask" > "$LEASE_OUT" ;;
esac
exit 0
"""

# Records every DHCP reply (server port 67 -> client port 68) reaching the instance's
# eth0, whoever sent it: proves which DHCP servers answered, not just which one won.
SNIFFER = """
import json, socket, struct, sys, time
out, ready, iface = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
s.settimeout(0.2)
open(ready, "w").write("ready")
end = time.time() + 90
with open(out, "a") as f:
    while time.time() < end:
        try:
            pkt = s.recv(4096)
        except socket.timeout:
            continue
        ip = pkt[14:]
        if len(ip) < 20 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 15) * 4:]
        if struct.unpack("!HH", udp[:4]) != (67, 68):
            continue
        bootp = udp[8:]
        if len(bootp) < 240 or bootp[0] != 2:
            continue
        rec = {"src": socket.inet_ntoa(ip[12:16]), "yiaddr": socket.inet_ntoa(bootp[16:20]),
               "chaddr": bootp[28:34].hex(":")}
        opts, i = bootp[240:], 0
        while i < len(opts) and opts[i] != 255:
            if opts[i] == 0:
                i += 1
                continue
            code, ln = opts[i], opts[i + 1]
            val = opts[i + 2:i + 2 + ln]
            if code == 53:
                rec["type"] = val[0]
            elif code == 54:
                rec["server"] = socket.inet_ntoa(val)
            elif code == 3:
                rec["router"] = socket.inet_ntoa(val[:4])
            i += 2 + ln
        f.write(json.dumps(rec) + "\\n")
        f.flush()
"""

DHCPOFFER, DHCPACK, DHCPNAK = 2, 5, 6


@pytest.fixture
def lab(lab: Lab) -> Lab:
    script = lab.root / "udhcpc-mh.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    return lab


# --- helpers -------------------------------------------------------------------------------


def _json(ns: Netns, *argv: str) -> Any:
    out = ns.run(*argv, check=False)
    return json.loads(out) if out.strip() else []


def _addresses(ns: Netns, dev: str) -> set[str]:
    """IPv4 addresses on ``dev`` as address/prefix, read with `ip -j`."""
    out = _json(ns, "ip", "-j", "-4", "addr", "show", "dev", dev)
    return {f"{a['local']}/{a['prefixlen']}" for i in out for a in i.get("addr_info", [])}


def _fixed_flag(lab: Lab, conf: Path, address: str, key: str, value: object) -> bool:
    """Whether the `novanet fixed list` row of ``address`` has ``key`` == ``value``."""
    row = next(r for r in lab.cli_json(conf, "fixed", "list") if r["address"] == address)
    return bool(row[key] == value)


def _has_only(ns: Netns, dev: str, cidr: str) -> bool:
    """``dev`` carries ``cidr`` and no other IPv4 address."""
    return _addresses(ns, dev) == {cidr}


def _vif(lab: Lab, conf: Path, uuid: str) -> dict[str, Any]:
    """The instance's only VIF from `novanet instance show --json`."""
    [vif] = lab.cli_json(conf, "instance", "show", uuid)["network_info"]
    return vif  # type: ignore[no-any-return]


def _subnet(vif: dict[str, Any]) -> dict[str, Any]:
    [subnet] = vif["network"]["subnets"]
    return subnet  # type: ignore[no-any-return]


def _fixed_address(vif: dict[str, Any]) -> str:
    [ip] = _subnet(vif)["ips"]
    return str(ip["address"])


def _dhcp(lab: Lab, vm: Netns, tries: int = 10) -> tuple[dict[str, str] | None, list[dict[str, Any]]]:
    """Run udhcpc in ``vm`` with a sniffer on eth0; return the lease udhcpc configured
    and every DHCP reply that reached the instance meanwhile."""
    lease = lab.root / f"mh-lease-{vm.name}"
    replies = lab.root / f"mh-replies-{vm.name}"
    ready = lab.root / f"mh-ready-{vm.name}"
    for p in (lease, replies, ready):
        p.unlink(missing_ok=True)
    sniffer = vm.popen(
        PYTHON,
        "-c",
        SNIFFER,
        str(replies),
        str(ready),
        "eth0",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(ready.exists, 15, what=f"DHCP sniffer in {vm.name}")
        udhcpc(vm, "eth0", tries, lab.root / "udhcpc-mh.sh", lease)
        time.sleep(1.5)  # a late answer of another host's dnsmasq would land meanwhile
    finally:
        sniffer.kill()
        sniffer.wait(timeout=10)
    got = json.loads(lease.read_text()) if lease.exists() else None
    seen = [json.loads(line) for line in replies.read_text().splitlines()] if replies.exists() else []
    return got, seen


def _check_dhcp(lab: Lab, vm: Netns, mac: str, address: str, server: str) -> None:
    """``vm`` leases exactly ``address`` with router ``server``, and every DHCP reply that
    reached it came from ``server`` (no other host's dnsmasq answered, not even a NAK)."""

    def attempt() -> tuple[dict[str, str], list[dict[str, Any]]] | None:
        got, seen = _dhcp(lab, vm, tries=5)
        return (got, seen) if got else None

    leased = eventually(attempt, 60, interval=0.5, what=f"a DHCP lease in {vm.name}")
    assert leased is not None
    got, seen = leased
    assert got == {"ip": address, "router": server, "serverid": server, "mask": "24"}, got
    mine = [r for r in seen if r["chaddr"] == mac]
    assert {r.get("type") for r in mine} >= {DHCPOFFER, DHCPACK}, mine
    assert all(r.get("type") != DHCPNAK for r in mine), mine
    assert {(r["src"], r.get("server"), r.get("router"), r["yiaddr"]) for r in mine} == {
        (server, server, server, address)
    }, mine
    route = _json(vm, "ip", "-j", "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in route] == [(server, "eth0")]


def _ping(src: Netns, dst: str, count: int = 1) -> bool:
    return src.ok("ping", "-c", str(count), "-W", "1", dst, timeout=count * 2 + 10)


def _each(fn: Callable[..., object], calls: Iterable[tuple[Any, ...]]) -> None:
    """Run ``fn(*args)`` for every call at once (each enters its namespace in a subprocess)
    and re-raise the first failure."""
    calls = list(calls)
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for f in [pool.submit(fn, *args) for args in calls]:
            f.result()


def _reached(pairs: Iterable[tuple[Netns, str]]) -> list[str]:
    """Ping every (source, destination) at once, three tries each; the pairs that got an
    answer (empty when all are cut off)."""
    pairs = list(pairs)
    procs = [
        src.popen("ping", "-c", "3", "-i", "0.3", "-W", "1", dst, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        for src, dst in pairs
    ]  # fmt: skip
    return [
        f"{src.name} -> {dst}" for (src, dst), p in zip(pairs, procs, strict=True) if p.wait(timeout=30) == 0
    ]


def _fdb(ns: Netns, dev: str) -> list[dict[str, Any]]:
    return _json(ns, "bridge", "-j", "fdb", "show", "dev", dev)  # type: ignore[no-any-return]


def _flood_remotes(ns: Netns, dev: str) -> set[str]:
    """Destinations of the all-zeros (flood) FDB entries of a vxlan device."""
    return {e["dst"] for e in _fdb(ns, dev) if e.get("mac") == "00:00:00:00:00:00" and "dst" in e}


def _neigh(ns: Netns, dev: str) -> dict[str, str | None]:
    """The neighbour (ARP) table of ``dev``: address -> MAC."""
    return {n["dst"]: n.get("lladdr") for n in _json(ns, "ip", "-j", "neigh", "show", "dev", dev)}


def _nft_counter(ns: Netns, family: str, table: str, name: str) -> int:
    """Packets of a named nftables counter, read with `nft -j` (0 if absent)."""
    out = _json(ns, "nft", "-j", "list", "counter", family, table, name)
    for obj in out.get("nftables", []) if isinstance(out, dict) else []:
        if "counter" in obj:
            return int(obj["counter"]["packets"])
    return 0


def _floods_to(ns: Netns, dev: str, remotes: set[str]) -> bool:
    return _flood_remotes(ns, dev) == remotes


def _nft_map(ns: Netns, table: str, name: str) -> dict[str, str]:
    """Elements of an nftables map in ``ip <table>``, read with `nft -j` (empty if none)."""
    out = _json(ns, "nft", "-j", "list", "table", "ip", table)
    for obj in out.get("nftables", []) if isinstance(out, dict) else []:
        m = obj.get("map")
        if m and m.get("name") == name:
            return {str(k): str(v) for k, v in m.get("elem", [])}
    return {}


def _host_config(lab: Lab, host: str, **extra: str) -> Path:
    return lab.config(
        host,
        host=host,
        public_interface="pub0",
        multi_host="True",
        force_dhcp_release="True",
        metadata_host="",
        **extra,
    )


def _agent_check(lab: Lab, conf: Path, ns: Netns, host: str) -> None:
    out = lab.cli(conf, "agent", "check", "--host", host, ns=ns, check=False)
    assert out.strip() == f"host {host} matches the database", out


# --- FlatDHCP multi-host -----------------------------------------------------------------


def test_flatdhcp_multi_host(lab: Lab, world: World) -> None:
    outside, h1, h2 = world.ns("out"), world.ns("h1"), world.ns("h2")
    vm1, vm2 = world.ns("vm1"), world.ns("vm2")
    hosts = {"h1": h1, "h2": h2}
    # The public network: a bridge in the outside namespace joining both hosts' pub0.
    outside.run("ip", "link", "add", "obr", "type", "bridge")
    outside.run("ip", "link", "set", "obr", "up")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "obr")
    for name, ns in hosts.items():
        world.veth(ns, "pub0", outside, f"o-{name}")
        outside.run("ip", "link", "set", f"o-{name}", "master", "obr")
        ns.run("ip", "addr", "add", f"{PUBLIC[name]}/24", "dev", "pub0")
    # The underlay: the flat interface of both hosts, one L2 segment.
    world.veth(h1, "und0", h2, "und0")

    conf = {
        name: _host_config(
            lab,
            name,
            network_manager="flatdhcp",
            flat_network_bridge="br100",
            flat_interface="und0",
            my_ip=PUBLIC[name],
            send_arp_for_ha="True",
        )
        for name in hosts
    }
    lab.cli(conf["h1"], "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/24")
    lab.cli(conf["h1"], "floating", "create", "--ip-range", FLOATING_RANGE, "--interface", "pub0")
    lab.cli(conf["h1"], "instance", "allocate", VM1, "--project-id", "p1", "--host", "h1")
    lab.cli(conf["h2"], "instance", "allocate", VM2, "--project-id", "p1", "--host", "h2")
    with ThreadPoolExecutor(2) as pool:
        vif1, vif2 = pool.map(lambda u: _vif(lab, conf["h1"], u), (VM1, VM2))
    assert vif1["network"]["multi_host"] is True
    addr1, addr2 = _fixed_address(vif1), _fixed_address(vif2)
    # Each instance's gateway and DHCP server is its own host's address on the network.
    gw = {"h1": _subnet(vif1)["gateway"], "h2": _subnet(vif2)["gateway"]}
    assert _subnet(vif1)["dhcp_server"] == gw["h1"] and _subnet(vif2)["dhcp_server"] == gw["h2"]
    assert len({gw["h1"], gw["h2"], addr1, addr2}) == 4, (gw, addr1, addr2)

    for name, ns in hosts.items():
        lab.start_agent(ns, conf[name], name)
    for name, ns in hosts.items():
        eventually(
            partial(_has_only, ns, "br100", f"{gw[name]}/24"),
            30,
            what=f"{name}'s own gateway (only) on its br100",
        )
        [und0] = _json(ns, "ip", "-j", "link", "show", "dev", "und0")
        assert und0.get("master") == "br100", und0
    _each(
        lambda name, uuid, vm: lab.cli(conf[name], "vif", "plug", uuid, "--netns", vm.name, ns=hosts[name]),
        [("h1", VM1, vm1), ("h2", VM2, vm2)],
    )

    # DHCP: each instance leases exactly its address from its own host, and only its own
    # host's dnsmasq answers although the DHCP broadcasts cross the underlay.
    _each(
        lambda *a: _check_dhcp(lab, *a),
        [(vm1, vif1["address"], addr1, gw["h1"]), (vm2, vif2["address"], addr2, gw["h2"])],
    )

    # East-west across hosts over und0: h1's bridge learns vm2's MAC behind und0.
    assert eventually(lambda: _ping(vm1, addr2), 15, what="vm1 -> vm2")
    assert _ping(vm2, addr1)
    fdb = _json(h1, "bridge", "-j", "fdb", "show", "br", "br100")
    learned = {e["mac"]: e.get("ifname") for e in fdb if e.get("state") != "permanent"}
    assert learned.get(vif2["address"]) == "und0", fdb

    # Out: each instance is SNATed by its own host to that host's routing_source_ip.
    peers = lab.listen(outside, 8080)
    assert lab.connect(vm1, OUTSIDE, 8080)
    assert lab.connect(vm2, OUTSIDE, 8080)
    assert peers.read_text().split() == [PUBLIC["h1"], PUBLIC["h2"]]

    # A floating IP of vm2 is NATed by h2 alone.
    fip = lab.cli_json(conf["h2"], "floating", "allocate", "--project-id", "p1")["address"]
    lab.cli(conf["h2"], "floating", "associate", fip, "--instance", VM2)
    eventually(lambda: fip in floating_local(h2, "pub0"), 20, what=f"{fip} local on h2's pub0")
    eventually(lambda: _nft_map(h2, "novanet", "floating-dnat") == {fip: addr2}, 20, what="h2 DNAT map")
    assert fip not in floating_local(h1) and f"{fip}/32" not in _addresses(h1, "pub0")
    assert fip not in _nft_map(h1, "novanet", "floating-dnat")
    inbound = lab.listen(vm2, 2222)
    assert eventually(lambda: lab.connect(outside, fip, 2222), 15, what="TCP to vm2's floating IP")
    assert inbound.read_text().split()[0] == OUTSIDE
    # Outward, vm2 now shows its floating IP, vm1 still its host's address.
    assert lab.connect(vm2, OUTSIDE, 8080)
    assert lab.connect(vm1, OUTSIDE, 8080)
    assert peers.read_text().split()[-2:] == [fip, PUBLIC["h1"]]
    # The outside resolved the floating IP to h2's pub0, not h1's.
    [h2pub] = _json(h2, "ip", "-j", "link", "show", "dev", "pub0")
    assert _neigh(outside, "obr").get(fip) == h2pub["address"], _neigh(outside, "obr")

    # Moved to vm1, the floating IP follows the instance to h1 (send_arp_for_ha tells the
    # outside at once): h2 lets go of it, h1 binds and NATs it.
    lab.cli(conf["h1"], "floating", "associate", fip, "--instance", VM1)
    eventually(lambda: fip in floating_local(h1, "pub0"), 20, what=f"{fip} local on h1's pub0")
    eventually(lambda: fip not in floating_local(h2), 20, what=f"{fip} gone from h2")
    eventually(lambda: _nft_map(h1, "novanet", "floating-dnat") == {fip: addr1}, 20, what="h1 DNAT map")
    assert fip not in _nft_map(h2, "novanet", "floating-dnat")
    [h1pub] = _json(h1, "ip", "-j", "link", "show", "dev", "pub0")
    eventually(
        lambda: _neigh(outside, "obr").get(fip) == h1pub["address"], 10, what="the outside's ARP entry moved"
    )
    inbound1 = lab.listen(vm1, 2222)
    assert eventually(lambda: lab.connect(outside, fip, 2222), 15, what="TCP to vm1's floating IP")
    assert inbound1.read_text().split()[0] == OUTSIDE
    assert lab.connect(vm1, OUTSIDE, 8080)
    assert lab.connect(vm2, OUTSIDE, 8080)
    assert peers.read_text().split()[-2:] == [fip, PUBLIC["h2"]]

    # Leases reached the database; deallocating vm2 (force_dhcp_release) is released by h2,
    # the DHCP server that gave the lease, and frees the address at once.
    for a in (addr1, addr2):
        eventually(partial(_fixed_flag, lab, conf["h1"], a, "leased", True), 15, what=f"{a} leased")
    # the compute side unplugs first: a deallocated VIF still plugged is an unknown port
    lab.cli(conf["h2"], "vif", "unplug", VM2, ns=hosts["h2"])
    lab.cli(conf["h2"], "instance", "deallocate", VM2)
    freed = partial(_fixed_flag, lab, conf["h1"], addr2, "instance_uuid", None)
    eventually(freed, 20, what="vm2's address freed")

    _each(lambda name, ns: _agent_check(lab, conf[name], ns, name), hosts.items())


# --- VLAN multi-host over VXLAN ----------------------------------------------------------


def test_vlan_multi_host_vxlan(lab: Lab, world: World) -> None:
    h1, h2 = world.ns("h1"), world.ns("h2")
    a1, a2, b1, b2 = world.ns("a1"), world.ns("a2"), world.ns("b1"), world.ns("b2")
    hosts = {"h1": h1, "h2": h2}
    world.veth(h1, "und0", h2, "und0")
    for name, ns in hosts.items():
        ns.run("ip", "addr", "add", f"{UNDERLAY[name]}/24", "dev", "und0")
    conf = {
        name: _host_config(
            lab,
            name,
            network_manager="vlan",
            vlan_segmentation="vxlan",
            vxlan_interface="und0",
            vxlan_local_ip=UNDERLAY[name],
            my_ip=UNDERLAY[name],
            vlan_start="100",
        )
        for name in hosts
    }
    c = conf["h1"]
    for label, cidr, project, vlan in (
        ("pa", "10.1.0.0/24", "pa", "100"),
        ("pb", "10.2.0.0/24", "pb", "101"),
    ):
        lab.cli(c, "network", "create", "--label", label, "--fixed-range-v4", cidr, "--project-id", project,
                "--vlan", vlan)  # fmt: skip
    placement = {A1: ("pa", "h1"), A2: ("pa", "h2"), B1: ("pb", "h1"), B2: ("pb", "h2")}
    vif = {}
    for uuid, (project, host) in placement.items():
        [vif[uuid]] = lab.cli_json(
            conf[host], "instance", "allocate", uuid, "--project-id", project, "--host", host
        )
    addr = {uuid: _fixed_address(v) for uuid, v in vif.items()}
    gw = {uuid: _subnet(v)["gateway"] for uuid, v in vif.items()}
    assert [(vif[u]["network"]["vlan"], vif[u]["network"]["bridge"]) for u in (A1, A2, B1, B2)] == [
        (100, "br100"),
        (100, "br100"),
        (101, "br101"),
        (101, "br101"),
    ]
    assert all(v["network"]["multi_host"] for v in vif.values())
    assert gw[A1] != gw[A2] and gw[B1] != gw[B2]

    # h1's agent first: h2 has no underlay address yet, so h1 floods nowhere; h2's agent
    # then registers it and h1 adds the peer without a restart.
    lab.start_agent(h1, conf["h1"], "h1")
    for dev in ("vx100", "vx101"):
        eventually(partial(_json, h1, "ip", "-j", "link", "show", "dev", dev), 30, what=f"{dev} on h1")
        assert _flood_remotes(h1, dev) == set()
    lab.start_agent(h2, conf["h2"], "h2")
    # Meanwhile the instances of h1 are plugged (`novanet vif plug` inside h1).
    vms = {A1: a1, A2: a2, B1: b1, B2: b2}

    def plug(uuid: str) -> None:
        host = placement[uuid][1]
        lab.cli(conf[host], "vif", "plug", uuid, "--netns", vms[uuid].name, ns=hosts[host])

    _each(plug, [(A1,), (B1,)])

    # Each host: one vxlan device per project network, VNI = VLAN id, over und0 from its
    # own underlay address, flooding to the peer host only; the bridge carries its own
    # gateway.
    peer = {"h1": "h2", "h2": "h1"}
    for name, ns in hosts.items():
        mine = {uuid for uuid, (_, host) in placement.items() if host == name}
        for vni, bridge in ((100, "br100"), (101, "br101")):
            dev = f"vx{vni}"
            eventually(
                partial(_floods_to, ns, dev, {UNDERLAY[peer[name]]}),
                30,
                what=f"{dev} on {name} flooding to {peer[name]}",
            )
            [link] = _json(ns, "ip", "-j", "-d", "link", "show", "dev", dev)
            data = link["linkinfo"]["info_data"]
            assert link["linkinfo"]["info_kind"] == "vxlan" and link.get("master") == bridge, link
            assert (data["id"], data["local"], data["link"]) == (vni, UNDERLAY[name], "und0"), data
            [own] = [gw[u] for u in mine if vif[u]["network"]["bridge"] == bridge]
            eventually(partial(_has_only, ns, bridge, f"{own}/24"), 20,
                       what=f"{name}'s own gateway on {bridge}")  # fmt: skip
    _each(plug, [(A2,), (B2,)])

    # DHCP from the instance's own host only.
    _each(lambda *a: _check_dhcp(lab, *a), [(vm, vif[u]["address"], addr[u], gw[u]) for u, vm in vms.items()])

    # Same project across hosts: through the VXLAN segment. Each bridge learns the remote
    # instance's MAC behind its vxlan port; the vxlan device itself learns nothing (its
    # remotes come from the database only) and floods to the peer's underlay address.
    assert eventually(lambda: _ping(a1, addr[A2]), 15, what="a1 -> a2 over vx100")
    assert eventually(lambda: _ping(b2, addr[B1]), 15, what="b2 -> b1 over vx101")
    for name, remote, dev in (
        ("h1", A2, "vx100"),
        ("h2", A1, "vx100"),
        ("h1", B2, "vx101"),
        ("h2", B1, "vx101"),
    ):
        fdb = _fdb(hosts[name], dev)
        remote_mac = vif[remote]["address"]
        assert any(e["mac"] == remote_mac and "dst" not in e for e in fdb), (name, dev, fdb)
        assert not any(e["mac"] == remote_mac and "dst" in e for e in fdb), (name, dev, fdb)
        assert _flood_remotes(hosts[name], dev) == {UNDERLAY[peer[name]]}

    # The other project reaches neither, routed through a host (same host or not) ...
    project_of = {u: p for u, (p, _) in placement.items()}
    cross = [(vms[s], addr[d]) for s, d in itertools.product(vms, repeat=2) if project_of[s] != project_of[d]]
    dropped = {name: _nft_counter(ns, "ip", "novanet", "drop-cross-network") for name, ns in hosts.items()}
    assert _reached(cross) == []
    # Dropped by novanet's no-routing-between-networks rule on each host, not lost.
    for name, ns in hosts.items():
        assert _nft_counter(ns, "ip", "novanet", "drop-cross-network") > dropped[name], name
    # ... nor on-link, with a route straight onto the other project's subnet.
    for src, other in ((b1, "10.1.0.0/24"), (a2, "10.2.0.0/24")):
        src.run("ip", "route", "add", other, "dev", "eth0")
    assert _reached([(b1, addr[A1]), (b1, addr[A2]), (a2, addr[B1]), (a2, addr[B2])]) == []
    # Within each project all is still fine.
    assert _reached([(a1, addr[A2]), (a2, addr[A1]), (b1, addr[B2]), (b2, addr[B1])]) == [
        f"{a1.name} -> {addr[A2]}",
        f"{a2.name} -> {addr[A1]}",
        f"{b1.name} -> {addr[B2]}",
        f"{b2.name} -> {addr[B1]}",
    ]

    _each(lambda name, ns: _agent_check(lab, conf[name], ns, name), hosts.items())


def _vpn_forwards(ns: Netns) -> dict[tuple[str, int], str]:
    """The VPN DNAT map of ``ip novanet`` (public address . port -> private address)."""
    out = _json(ns, "nft", "-j", "list", "table", "ip", "novanet")
    for obj in out.get("nftables", []) if isinstance(out, dict) else []:
        m = obj.get("map")
        if m and m.get("name") == "vpn-dnat":
            return {(k["concat"][0], int(k["concat"][1])): v for k, v in m.get("elem", [])}
    return {}


def test_vlan_multi_host_vpn_forward_only_on_its_host(lab: Lab, world: World) -> None:
    h1, h2 = world.ns("h1"), world.ns("h2")
    hosts = {"h1": h1, "h2": h2}
    world.veth(h1, "und0", h2, "und0")
    conf = {}
    for name, ns in hosts.items():
        ns.run("ip", "addr", "add", f"{UNDERLAY[name]}/24", "dev", "und0")
        conf[name] = _host_config(
            lab,
            name,
            network_manager="vlan",
            vlan_segmentation="vxlan",
            vxlan_interface="und0",
            my_ip=UNDERLAY[name],
        )
    # Created from h1: the VPN endpoint is h1's vpn_ip (= my_ip).
    [net] = lab.cli_json(conf["h1"], "network", "create", "--label", "pa", "--fixed-range-v4", "10.1.0.0/24",
                         "--project-id", "pa", "--vlan", "100")  # fmt: skip
    assert net["vpn_public_address"] == UNDERLAY["h1"]
    vpn = {(UNDERLAY["h1"], int(net["vpn_public_port"])): net["vpn_private_address"]}
    lab.cli(conf["h1"], "instance", "allocate", A1, "--project-id", "pa", "--host", "h1")
    lab.cli(conf["h2"], "instance", "allocate", A2, "--project-id", "pa", "--host", "h2")
    _each(lambda name, ns: lab.cli(conf[name], "agent", "--host", name, "--once", ns=ns), hosts.items())
    assert _vpn_forwards(h1) == vpn
    # h2 is not the VPN endpoint: forwarding h1's public address there is not its business.
    assert _vpn_forwards(h2) == {}
