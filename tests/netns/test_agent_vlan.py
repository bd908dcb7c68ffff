"""VLAN manager, single host without vlan_interface, end to end: one bridge br<vlan> and
one dnsmasq per project network, real DHCP clients, isolation between projects (no L2
path, L3 through the host dropped and counted), and the cloudpipe VPN DNAT."""

from __future__ import annotations

from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hostlab import Lab, eventually
from lab_extra_vlan import (
    counter_packets,
    dhcp_lease,
    dnsmasq_servers,
    ipv4_of,
    map_elements,
    parallel,
    plug_spy,
    ports_of,
    set_elements,
    udp_listen,
    udp_send,
)
from nslab import Netns, World

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
HOST = "vnet1"
PA1 = "a1111111-1111-4111-8111-111111111111"
PA2 = "a2222222-2222-4222-8222-222222222222"
PAVPN = "a3333333-3333-4333-8333-333333333333"
PB1 = "b1111111-1111-4111-8111-111111111111"
PB2 = "b2222222-2222-4222-8222-222222222222"
PB3 = "b3333333-3333-4333-8333-333333333333"  # plugged last, into the spy's namespace


def _allocate(lab: Lab, conf: Any, uuid: str, project: str, *extra: str) -> dict[str, Any]:
    [vif] = lab.cli_json(conf, "instance", "allocate", uuid, "--project-id", project, "--host", HOST, *extra)
    return vif  # type: ignore[no-any-return]


def _address(vif: dict[str, Any]) -> str:
    return vif["network"]["subnets"][0]["ips"][0]["address"]  # type: ignore[no-any-return]


def _blocked_ping(src: Netns, address: str) -> bool:
    return not src.ok("ping", "-c", "2", "-i", "0.3", "-W", "1", address)


def test_vlan_two_projects_single_host(lab: Lab, world: World) -> None:
    outside, host = world.ns("vout"), world.ns("vhost")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    conf = lab.config(
        HOST,
        network_manager="vlan",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        vpn_ip=PUBLIC_HOST,
        host=HOST,
        network_host=HOST,
        metadata_host="",
    )
    nets = lab.cli_json(
        conf, "network", "create", "--label", "v", "--fixed-range-v4", "10.20.0.0/16",
        "--num-networks", "2", "--network-size", "256",
    )  # fmt: skip
    assert [(n["cidr"], n["vlan"], n["bridge"], n["vpn_public_port"]) for n in nets] == [
        ("10.20.0.0/24", 100, "br100", 1000),
        ("10.20.1.0/24", 101, "br101", 1001),
    ]
    # The agent runs from the start: everything below reaches it through the change log.
    lab.start_agent(host, conf, HOST)

    # Six allocations at once, as computes would send them: each project takes one free
    # network on its first boot and every later instance (and its cloudpipe) joins it.
    wanted = ((PA1, "pa"), (PA2, "pa"), (PAVPN, "pa", "--vpn"), (PB1, "pb"), (PB2, "pb"), (PB3, "pb"))
    done = parallel(*(partial(_allocate, lab, conf, *w) for w in wanted))
    vifs = {w[0]: v for w, v in zip(wanted, done, strict=True)}
    by_uuid = {n["uuid"]: n for n in nets}
    net_a, net_b = by_uuid[vifs[PA1]["network"]["id"]], by_uuid[vifs[PB1]["network"]["id"]]
    assert net_a is not net_b
    for uuid, net in ((PA2, net_a), (PAVPN, net_a), (PB2, net_b), (PB3, net_b)):
        assert vifs[uuid]["network"]["id"] == net["uuid"]
    for uuid, project, *_ in wanted:
        net, vif = (net_a if project == "pa" else net_b), vifs[uuid]
        assert (vif["network"]["bridge"], vif["network"]["tenant_id"]) == (net["bridge"], project)
        assert IPv4Address(_address(vif)) in IPv4Network(net["cidr"])
    assert _address(vifs[PAVPN]) == net_a["vpn_private_address"]
    assert len({_address(v) for v in vifs.values()}) == 6
    br_a, br_b = net_a["bridge"], net_b["bridge"]
    gw_a, gw_b = net_a["gateway"], net_b["gateway"]

    vms = {u: world.ns(f"v{u[:3]}") for u in (PA1, PA2, PAVPN, PB1, PB2)}
    eventually(
        lambda: f"{gw_a}/24" in ipv4_of(host, br_a) and f"{gw_b}/24" in ipv4_of(host, br_b),
        30,
        what="gateways on both bridges",
    )
    parallel(
        *(partial(lab.cli, conf, "vif", "plug", u, "--netns", vm.name, ns=host) for u, vm in vms.items())
    )

    # Each project network is its own bridge, carrying only its own instances' ports, and
    # nothing else (no vlan_interface: nothing leaves the host).
    assert ports_of(host, br_a) == {vifs[u]["devname"] for u in (PA1, PA2, PAVPN)}
    assert ports_of(host, br_b) == {vifs[u]["devname"] for u in (PB1, PB2)}

    # nftables, read with nft: both bridges known, both ranges SNATed (adjacent ranges may
    # be merged into one interval), and the VPN DNAT of both networks.
    def nat_ready() -> bool:
        assert set_elements(host, "bridges") == {"br100", "br101"}
        snat = [IPv4Network(r) for r in set_elements(host, "snat-ranges")]
        for n in nets:
            assert any(IPv4Network(n["cidr"]).subnet_of(r) for r in snat), (n["cidr"], snat)
        assert map_elements(host, "vpn-dnat") == {
            (PUBLIC_HOST, 1000): "10.20.0.2",
            (PUBLIC_HOST, 1001): "10.20.1.2",
        }
        assert set_elements(host, "vpn-servers") == {"10.20.0.2", "10.20.1.2"}
        return True

    eventually(nat_ready, 20, what="NAT of both networks")
    # One dnsmasq per network, each started for this lab.
    uuids = {n["uuid"] for n in nets}

    def both_running() -> dict[str, int]:
        running = dnsmasq_servers(lab, HOST)
        return running if set(running) == uuids else {}

    servers = eventually(both_running, 20, what="a dnsmasq per network")

    # DHCP: each instance gets exactly its address, from its own project's server.
    for uuid, vm in vms.items():
        gw = vifs[uuid]["network"]["subnets"][0]["gateway"]
        lease = dhcp_lease(lab, vm)
        assert lease is not None, f"no lease for {uuid}"
        assert (lease["ip"], lease["serverid"], lease["router"]) == (_address(vifs[uuid]), gw, gw)
    pa1, pa2, pb1, pb2 = (vms[u] for u in (PA1, PA2, PB1, PB2))
    a1, a2, b1, b2 = (_address(vifs[u]) for u in (PA1, PA2, PB1, PB2))

    # Within a project: reachable.
    assert pa1.ok("ping", "-c", "1", "-W", "2", a2)
    assert pa2.ok("ping", "-c", "1", "-W", "2", a1)
    assert pb2.ok("ping", "-c", "1", "-W", "2", b1)
    tcp_b1 = lab.listen(pb1, 8080)
    assert lab.connect(pb2, b1, 8080)
    assert tcp_b1.read_text().split() == [b2]
    # Out of the cloud: SNAT to routing_source_ip works for both projects.
    tcp_out = lab.listen(outside, 8080)
    assert lab.connect(pa1, OUTSIDE, 8080)
    assert lab.connect(pb1, OUTSIDE, 8080)
    assert tcp_out.read_text().split() == [PUBLIC_HOST, PUBLIC_HOST]

    # Across projects, routed through the host: dropped, and counted as such.
    dropped = counter_packets(host, "drop-cross-network")
    assert _blocked_ping(pa1, b1)
    assert _blocked_ping(pb2, a2)
    assert not lab.connect(pa1, b1, 8080, timeout=2)
    assert tcp_b1.read_text().split() == [b2]
    grown = counter_packets(host, "drop-cross-network") - dropped
    assert grown >= 5, f"drop-cross-network grew by {grown}"  # 2 + 2 pings, >= 1 SYN

    # No L2 path either: pb1's address, asked on pa1's own link, is never resolved.
    pa1.run("ip", "route", "add", f"{b1}/32", "dev", "eth0")
    before = counter_packets(host, "drop-cross-network")
    assert _blocked_ping(pa1, b1)
    neigh = pa1.run("ip", "neigh", "show", b1, "dev", "eth0")
    assert "lladdr" not in neigh, neigh
    assert counter_packets(host, "drop-cross-network") == before  # never reached L3
    pa1.run("ip", "route", "del", f"{b1}/32", "dev", "eth0")

    # Each project's DHCP serves only its own segment, and only registered ports: a client
    # on an unregistered port of pb's bridge gets nothing, whatever MAC it carries (the port
    # is dropped; pa's dnsmasq never hears it)...
    spy = world.ns("vspy")
    plug_spy(host, spy, br_b, vifs[PA1]["address"])
    assert dhcp_lease(lab, spy, tries=3) is None
    spy.run("ip", "link", "set", "eth0", "address", vifs[PB3]["address"])
    assert dhcp_lease(lab, spy, tries=2) is None
    host.run("ip", "link", "del", "spyh0")
    # ...while the pb instance plugged on its own port gets its address from pb's server.
    lab.cli(conf, "vif", "plug", PB3, "--netns", spy.name, ns=host)
    lease = dhcp_lease(lab, spy)
    assert lease is not None
    assert (lease["ip"], lease["serverid"]) == (_address(vifs[PB3]), gw_b)

    # pa's cloudpipe: UDP to vpn_ip:<pa's VPN port> from outside reaches it on port 1194,
    # from the outside's own address.
    received = udp_listen(lab, vms[PAVPN], 1194)

    def poke() -> str:
        udp_send(outside, PUBLIC_HOST, net_a["vpn_public_port"], "hello")
        return received.read_text()

    eventually(poke, 10, what="UDP through the VPN DNAT")
    assert received.read_text().splitlines()[0] == f"{OUTSIDE} hello"

    assert dnsmasq_servers(lab, HOST) == servers  # the same two, never restarted
    lab.cli(conf, "agent", "check", "--host", HOST, ns=host)  # and nothing drifted
