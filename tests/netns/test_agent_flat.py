"""Flat manager, single host, end to end: real agent, nftables, no DHCP server, an
instance configured statically from its network info, TCP out through SNAT."""

from __future__ import annotations

from hostlab import NOVANET, Lab, eventually
from lab_extra_vlan import (
    counter_packets,
    dhcp_lease,
    dnsmasq_processes,
    dnsmasq_servers,
    ipv4_of,
    ports_of,
    set_elements,
)
from nslab import World

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
FIXED = "10.1.0.0/24"
GATEWAY = "10.1.0.1"
U1 = "33333333-3333-4333-8333-333333333333"


def test_flat_single_host(lab: Lab, world: World) -> None:
    outside, host, vm = world.ns("fout"), world.ns("fhost"), world.ns("fvm")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    conf = lab.config(
        "flat1",
        network_manager="flat",
        flat_network_bridge="br100",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        host="flat1",
        network_host="flat1",
        metadata_host="",
    )
    [net] = lab.cli_json(conf, "network", "create", "--label", "flat", "--fixed-range-v4", FIXED)
    info = lab.cli_json(conf, "instance", "allocate", U1, "--project-id", "p1", "--host", "flat1")
    assert info[0]["network"]["dhcp"] is False
    assert info[0]["network"]["subnets"][0]["dhcp_server"] is None

    lab.start_agent(host, conf, "flat1")
    eventually(lambda: f"{GATEWAY}/24" in ipv4_of(host, "br100"), 20, what="gateway on br100")
    lab.cli(conf, "vif", "plug", U1, "--netns", vm.name, ns=host)
    # Converged: the agent's own drift check is clean before anything is judged.
    eventually(
        lambda: host.ok(NOVANET, "--config-file", str(conf), "agent", "check", "--host", "flat1"),
        20,
        what="agent check clean",
    )

    # The bridge and the NAT, seen with ip and nft themselves.
    [vif] = info
    assert ports_of(host, "br100") == {vif["devname"]}
    assert FIXED in set_elements(host, "snat-ranges")
    assert set_elements(host, "bridges") == {"br100"}

    # Flat: no DHCP server for the network, and a DHCP client gets nothing.
    assert dnsmasq_processes(lab) == []
    assert dnsmasq_servers(lab, "flat1") == {}
    assert not (lab.root / "state-flat1" / "networks" / "flat1" / net["uuid"] / "pid").exists()
    assert dhcp_lease(lab, vm, tries=3) is None
    assert dnsmasq_processes(lab) == []

    # The instance configures itself from its rendered network info, as an injected guest.
    shown = lab.cli_json(conf, "instance", "show", U1)["network_info"][0]
    subnet = shown["network"]["subnets"][0]
    ip = subnet["ips"][0]
    assert shown["address"] == vif["address"]
    assert subnet["gateway"] == GATEWAY
    vm.run("ip", "addr", "add", f"{ip['address']}/{ip['prefixlen']}", "dev", "eth0")
    vm.run("ip", "route", "add", "default", "via", subnet["gateway"])
    eventually(lambda: vm.ok("ping", "-c", "1", "-W", "1", GATEWAY), 10, what="ping the gateway")

    # Out through SNAT: the outside sees routing_source_ip, never the fixed address.
    peers = lab.listen(outside, 8080)
    assert lab.connect(vm, OUTSIDE, 8080)
    assert peers.read_text().split() == [PUBLIC_HOST]
    # Nothing was routed between bridges, and nothing drifted.
    assert counter_packets(host, "drop-cross-network") == 0
    lab.cli(conf, "agent", "check", "--host", "flat1", ns=host)
