"""FlatDHCP single-host end to end: real agent, dnsmasq, nftables, DHCP client, TCP."""

from __future__ import annotations

from hostlab import Lab, eventually
from nslab import World

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def _fixed(lab: Lab, conf, address: str) -> dict:
    return next(r for r in lab.cli_json(conf, "fixed", "list") if r["address"] == address)


def test_flatdhcp_single_host(lab: Lab, world: World) -> None:
    outside, host, vm1, vm2 = world.ns("out"), world.ns("host"), world.ns("vm1"), world.ns("vm2")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    conf = lab.config(
        "net1",
        network_manager="flatdhcp",
        flat_network_bridge="br100",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        host="net1",
        network_host="net1",
        force_dhcp_release="True",
        metadata_host="",
    )
    lab.cli(conf, "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/24")
    lab.cli(conf, "floating", "create", "--ip-range", "203.0.113.16/29", "--interface", "pub0")
    info = lab.cli_json(conf, "instance", "allocate", U1, "--project-id", "p1", "--host", "net1")
    address = info[0]["network"]["subnets"][0]["ips"][0]["address"]

    lab.start_agent(host, conf, "net1")
    eventually(
        lambda: "10.0.0.1" in host.run("ip", "-j", "addr", "show", "br100", check=False),
        20,
        what="gateway on br100",
    )
    lab.cli(conf, "vif", "plug", U1, "--netns", vm1.name, ns=host)

    # DHCP: exactly the address novanet chose, and the lease reaches the database.
    assert lab.dhcp(vm1) == address
    eventually(lambda: _fixed(lab, conf, address)["leased"], 15, what="leased flag")
    assert vm1.ok("ping", "-c", "1", "-W", "2", "10.0.0.1")

    # Out through SNAT: the outside sees routing_source_ip.
    peers = lab.listen(outside, 8080)
    assert lab.connect(vm1, OUTSIDE, 8080)
    assert peers.read_text().split() == [PUBLIC_HOST]

    # A floating IP: reachable from outside, and the instance's own source outward.
    fip = lab.cli_json(conf, "floating", "allocate", "--project-id", "p1")["address"]
    lab.cli(conf, "floating", "associate", fip, "--instance", U1)
    inbound = lab.listen(vm1, 2222)
    eventually(lambda: lab.connect(outside, fip, 2222), 10, what="TCP to the floating IP")
    assert inbound.read_text().split()[0] == OUTSIDE
    assert lab.connect(vm1, OUTSIDE, 8080)
    assert peers.read_text().split()[-1] == fip

    # Disassociating cuts the path.
    lab.cli(conf, "floating", "disassociate", fip)
    eventually(lambda: not lab.connect(outside, fip, 2222, timeout=1), 10, what="floating path cut")

    # Deallocate with force_dhcp_release: the lease goes, the address is free at once.
    # (the compute side unplugs first: a deallocated VIF still plugged is an unknown port)
    lab.cli(conf, "vif", "unplug", U1, ns=host)
    lab.cli(conf, "instance", "deallocate", U1)
    eventually(lambda: _fixed(lab, conf, address)["instance_uuid"] is None, 15, what="address freed")
    info2 = lab.cli_json(conf, "instance", "allocate", U2, "--project-id", "p1", "--host", "net1")
    assert info2[0]["network"]["subnets"][0]["ips"][0]["address"] == address
    lab.cli(conf, "vif", "plug", U2, "--netns", vm2.name, ns=host)
    assert eventually(lambda: lab.dhcp(vm2, tries=3), 30, what="DHCP for the new owner") == address
    # Nothing drifted: the agent's own check agrees.
    lab.cli(conf, "agent", "check", "--host", "net1", ns=host)
