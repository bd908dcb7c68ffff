"""Refused commands: one line on stderr, the error's exit code, the database unchanged."""

from __future__ import annotations

import uuid as uuidlib

import pytest

INVALID, NOT_FOUND, CONFLICT, FORBIDDEN = 2, 3, 4, 5
FLOAT_RANGE = "203.0.113.0/28"


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@pytest.fixture
def world(cli) -> dict:
    """A network with one instance and a floating pool with one address held by p1."""
    [net] = cli.json("network", "create", "--label", "net1", "--fixed-range-v4", "10.0.0.0/24")
    inst = new_uuid()
    cli.ok("instance", "allocate", inst, "--project-id", "p1", "--host", "h1")
    cli.ok("floating", "create", "--ip-range", FLOAT_RANGE)
    cli.ok("floating", "allocate", "--project-id", "p1")
    return {"net": net, "instance": inst, "cli": cli}


def create(*extra: str, cidr: str = "10.1.0.0/24") -> list[str]:
    return ["network", "create", "--label", "x", "--fixed-range-v4", cidr, *extra]


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (create(cidr="10.1.0.0/33"), INVALID, "not an IPv4 CIDR"),
        (create(cidr="10.1.0.1/24"), INVALID, "host bits are set"),
        (create(cidr="fd00::/64"), INVALID, "IPv6"),
        (create(cidr="10.0.0.0/25"), CONFLICT, "overlaps existing network 10.0.0.0/24"),
        (create(cidr="10.0.0.0/24"), CONFLICT, "overlaps"),
        (create(cidr="203.0.113.0/28"), CONFLICT, "floating IP"),
        (create("--num-networks", "3", "--network-size", "128"), INVALID, "do not fit"),
        (create("--num-networks", "0"), INVALID, "at least 1"),
        (create("--network-size", "2"), INVALID, "network size"),
        (create("--bridge", "b" * 16), INVALID, "invalid bridge name"),
        (create("--bridge", "br 100"), INVALID, "invalid bridge name"),
        (create("--bridge", "br;reboot"), INVALID, "invalid bridge name"),
        (create("--bridge-interface", "eth0;x"), INVALID, "invalid bridge interface name"),
        (create("--dns1", "8.8.8"), INVALID, "dns1"),
        (create("--gateway", "10.2.0.1"), INVALID, "gateway"),
        (create("--vlan", "100"), INVALID, "VLAN mode"),
        (create("--fixed-cidr", "10.9.0.0/25"), INVALID, "not inside"),
        (create("--uuid", "nope"), INVALID, "uuid"),
        # special-purpose ranges, refused with the reason
        (create(cidr="127.0.0.0/24"), INVALID, "loopback"),
        (create(cidr="224.0.0.0/24"), INVALID, "multicast"),
        (create(cidr="240.0.0.0/24"), INVALID, "reserved"),
        (create(cidr="255.255.255.0/24"), INVALID, "broadcast"),
        (create(cidr="169.254.169.0/24"), INVALID, "metadata"),
        (create(cidr="169.254.0.0/24"), INVALID, "link-local"),
        (create(cidr="0.0.0.0/0"), INVALID, "0.0.0.0/8"),
        (create(cidr="0.0.0.0/24"), INVALID, "not routable"),
        (create("--dns1", "127.0.0.1"), INVALID, "dns1 127.0.0.1: loopback"),
        (create("--dns2", "224.0.0.1"), INVALID, "multicast"),
        (create("--dns1", "8.8.8.8;x"), INVALID, "dns1"),
        (create("--dns2", "8.8.8.8 9.9.9.9"), INVALID, "dns2"),
        # integers the database cannot hold: a clear error, not an OverflowError
        (create("--priority", "99999999999999999999"), INVALID, "invalid priority"),
        (create("--priority", "-99999999999999999999"), INVALID, "invalid priority"),
        (create("--network-size", "99999999999999999999"), INVALID, "network size"),
        (create("--num-networks", "99999999999999999999"), INVALID, "number of networks"),
        (["floating", "create", "--ip-range", "127.0.0.0/30"], INVALID, "loopback"),
        (["floating", "create", "--ip-range", "169.254.169.254"], INVALID, "link-local"),
        (["network", "delete", "--fixed-range", "10.0.0.0/24"], CONFLICT, "still has 1 allocated"),
        (["network", "delete", "--fixed-range", "10.9.0.0/24"], NOT_FOUND, "not found"),
        (["network", "delete"], INVALID, "exactly one of"),
        (["network", "modify", "10.0.0.0/24"], INVALID, "nothing to change"),
        (["fixed", "reserve", "--address", "10.0.0.2"], CONFLICT, "in use by instance"),
        (["fixed", "unreserve", "--address", "10.0.0.1"], INVALID, "stays reserved"),
        (["fixed", "reserve", "--address", "10.200.0.1"], NOT_FOUND, "not found"),
        (["floating", "create", "--ip-range", "203.0.113.5"], CONFLICT, "already exists"),
        (["floating", "create", "--ip-range", "10.0.0.128/25"], CONFLICT, "overlaps fixed network"),
        (
            ["floating", "create", "--ip-range", "198.51.100.0/24", "--interface", "e" * 16],
            INVALID,
            "interface",
        ),
        (["floating", "delete", "--ip-range", FLOAT_RANGE], CONFLICT, "allocated to project p1"),
        (["floating", "release", "203.0.113.1", "--project-id", "p2"], FORBIDDEN, "another project"),
        (["floating", "release", "203.0.113.2"], CONFLICT, "not allocated"),
        (["floating", "release", "198.51.100.1"], NOT_FOUND, "not found"),
        (["floating", "disassociate", "203.0.113.1"], CONFLICT, "not associated"),
        (
            ["floating", "allocate", "--project-id", "p1", "--pool", "nopool"],
            NOT_FOUND,
            "pool nopool not found",
        ),
        (["instance", "show", new_uuid()], NOT_FOUND, "not found"),
        (["instance", "deallocate", new_uuid()], NOT_FOUND, "not found"),
        (["instance", "show", "not-a-uuid"], INVALID, "invalid instance uuid"),
        (
            ["vpn", "change", "--project", "p1", "--ip", "198.51.100.1", "--port", "1194"],
            NOT_FOUND,
            "no VLAN",
        ),
    ],
)
def test_refused(world, args, code, match) -> None:
    world["cli"].refused(*args, code=code, match=match)


def test_refused_instance_requests(world) -> None:
    cli, net, inst = world["cli"], world["net"]["uuid"], world["instance"]

    def alloc(*extra: str) -> list[str]:
        return ["instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1", *extra]

    cli.refused(*alloc("--network", new_uuid()), code=NOT_FOUND, match="not found")
    cli.refused(*alloc("--network", f"{net}=10.9.9.9"), code=INVALID, match="is not in network")
    cli.refused(*alloc("--network", f"{net}=10.0.0.1"), code=CONFLICT, match="reserved")
    cli.refused(*alloc("--network", f"{net}=10.0.0.0"), code=CONFLICT, match="reserved")
    cli.refused(*alloc("--network", f"{net}=10.0.0.2"), code=CONFLICT, match="already in use")
    cli.refused(*alloc("--network", net, "--network", net), code=INVALID, match="requested twice")
    cli.refused(*alloc("--vpn"), code=INVALID, match="VLAN mode")
    cli.refused(*alloc("--hostname", "bad_name"), code=INVALID, match="invalid hostname")
    cli.refused(
        "instance", "allocate", inst, "--project-id", "p1", "--host", "h1", code=CONFLICT, match="already has"
    )
    cli.refused("floating", "associate", "203.0.113.1", "--instance", new_uuid(), code=NOT_FOUND)
    cli.refused(
        "floating", "associate", "203.0.113.1", "--instance", inst, "--fixed-address", "10.0.0.7",
        code=INVALID, match="not a fixed IP of instance",
    )  # fmt: skip
    cli.refused(
        "floating", "associate", "203.0.113.2", "--instance", inst, code=CONFLICT, match="not allocated"
    )


def test_reserved_by_operator_is_refused(world) -> None:
    cli, net = world["cli"], world["net"]["uuid"]
    cli.ok("fixed", "reserve", "--address", "10.0.0.77")
    cli.refused(
        "instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1",
        "--network", f"{net}=10.0.0.77", code=CONFLICT, match="is reserved",
    )  # fmt: skip


def test_another_projects_network_and_instance(world) -> None:
    cli, inst = world["cli"], world["instance"]
    [own] = cli.json(
        "network", "create", "--label", "p2net", "--fixed-range-v4", "10.5.0.0/24", "--project-id", "p2"
    )
    cli.refused(
        "instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1", "--network", own["uuid"],
        code=FORBIDDEN, match="another project",
    )  # fmt: skip
    cli.ok("floating", "allocate", "--project-id", "p2")
    cli.refused(
        "floating", "associate", "203.0.113.2", "--instance", inst, code=FORBIDDEN, match="belongs to"
    )
    # A network with a project cannot be deleted.
    cli.refused("network", "delete", "--uuid", own["uuid"], code=CONFLICT, match="associated with project p2")


def test_exhausted_network(cli) -> None:
    # A /30: network, gateway and broadcast reserved, one address for instances.
    [net] = cli.json("network", "create", "--label", "tiny", "--fixed-range-v4", "10.3.0.0/30")
    cli.ok("instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1")
    cli.refused(
        "instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1",
        code=CONFLICT, match="no more fixed IPs in network tiny (10.3.0.0/30)",
    )  # fmt: skip
    cli.refused(
        "instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1", "--network", net["uuid"],
        code=CONFLICT, match="no more fixed IPs in network",
    )  # fmt: skip


def test_exhausted_pool(cli) -> None:
    cli.ok("floating", "create", "--ip-range", "203.0.113.0/30", "--pool", "small")
    cli.ok("floating", "allocate", "--project-id", "p1", "--pool", "small")
    cli.ok("floating", "allocate", "--project-id", "p2", "--pool", "small")
    cli.refused(
        "floating", "allocate", "--project-id", "p3", "--pool", "small",
        code=CONFLICT, match="no more floating IPs in pool small",
    )  # fmt: skip


def test_quota_exceeded(make_cli) -> None:
    cli = make_cli(config="quota_floating_ips=1\n")
    cli.ok("floating", "create", "--ip-range", FLOAT_RANGE)
    cli.ok("floating", "allocate", "--project-id", "p1")
    cli.refused("floating", "allocate", "--project-id", "p1", code=FORBIDDEN, match="quota exceeded")
    # Another project has its own quota.
    cli.ok("floating", "allocate", "--project-id", "p2")


def test_delete_network_with_project(cli) -> None:
    cli.ok("network", "create", "--label", "n", "--fixed-range-v4", "10.0.0.0/24", "--project-id", "p1")
    cli.refused("network", "delete", "--fixed-range", "10.0.0.0/24", code=CONFLICT, match="project p1")
    cli.ok("network", "modify", "10.0.0.0/24", "--disassociate-project")
    cli.ok("network", "delete", "--fixed-range", "10.0.0.0/24")


def test_modify_refusals(world) -> None:
    cli = world["cli"]
    cli.ok("network", "modify", "10.0.0.0/24", "--project", "p1")
    cli.refused(
        "network", "modify", "10.0.0.0/24", "--project", "p2", code=CONFLICT, match="belongs to project p1"
    )
    cli.refused(
        "network", "modify", "10.0.0.0/24", "--disassociate-project", code=CONFLICT, match="deallocate"
    )
    cli.refused(
        "network",
        "modify",
        "10.0.0.0/24",
        "--host",
        "h",
        "--disassociate-host",
        code=INVALID,
        match="contradict",
    )
    cli.refused("network", "modify", "10.77.0.0/24", "--host", "h", code=NOT_FOUND)


@pytest.fixture
def vlan_world(vlan_cli) -> object:
    vlan_cli.ok("network", "create", "--label", "v", "--fixed-range-v4", "10.10.0.0/24", "--vlan", "100")
    return vlan_cli


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (create("--vlan", "4095"), INVALID, "VLAN id 4095"),
        (create("--vlan", "0"), INVALID, "VLAN id 0"),
        (create("--vlan", "100"), CONFLICT, "VLAN 100 is already used"),
        (create("--vlan", "4094", "--num-networks", "2", "--network-size", "128"), INVALID, "outside 1-4094"),
        (create("--vpn", "70000"), INVALID, "VPN start port"),
        (create("--vpn", "1000"), CONFLICT, "VPN port 1000"),
        (create("--bridge", "br1", "--num-networks", "2", "--network-size", "128"), INVALID, "--bridge"),
        (create("--bridge", "x" * 16), INVALID, "invalid bridge name"),
    ],
)
def test_refused_vlan(vlan_world, args, code, match) -> None:
    vlan_world.refused(*args, code=code, match=match)


def test_vlan_no_network_left(vlan_world) -> None:
    vlan_world.ok("instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h1")
    vlan_world.refused(
        "instance", "allocate", new_uuid(), "--project-id", "p2", "--host", "h1",
        code=CONFLICT, match="no VLAN network left for project p2",
    )  # fmt: skip


def test_single_network_options(world) -> None:
    cli, net = world["cli"], world["net"]
    cli.refused(*create("--uuid", net["uuid"]), code=CONFLICT, match="already exists")
    cli.refused(
        *create("--gateway", "10.1.0.1", "--num-networks", "2", "--network-size", "128"),
        code=INVALID, match="--gateway applies to one network",
    )  # fmt: skip


def test_values_are_stored_canonical(cli) -> None:
    """Whitespace around addresses and CIDRs is stripped the same way everywhere: the
    database holds the parsed value, never the text as typed (a newline in dns1 once
    reached dnsmasq's options file)."""
    [net] = cli.json(
        "network", "create", "--label", "n", "--fixed-range-v4", " 10.7.0.0/24\n",
        "--dns1", "8.8.8.8\n", "--dns2", " 1.1.1.1 ", "--gateway", "10.7.0.1 ",
    )  # fmt: skip
    assert (net["cidr"], net["dns1"], net["dns2"], net["gateway"]) == (
        "10.7.0.0/24",
        "8.8.8.8",
        "1.1.1.1",
        "10.7.0.1",
    )
    [shown] = [n for n in cli.json("network", "list") if n["uuid"] == net["uuid"]]
    assert (shown["dns1"], shown["dns2"]) == ("8.8.8.8", "1.1.1.1")
    cli.ok("network", "delete", "--fixed-range", "10.7.0.0/24 ")


@pytest.mark.parametrize(
    "line", ["use_single_default_gateway = True", "forward_bridge_interface = eth1", "dhcpbridge = /x"]
)
def test_agent_refuses_options_it_cannot_honour(make_cli, line: str) -> None:
    cli = make_cli(config=line + "\n")
    name = line.split()[0]
    cli.refused("agent", "check", "--host", "h1", code=6, match=f"option {name} = ")


def test_a_tap_under_another_name_than_the_vifs_devname_is_refused(world) -> None:
    """The bridge filter follows the VIF's devname and drops any other port: a tap under
    another name is refused before anything reaches the kernel."""
    cli, inst = world["cli"], world["instance"]
    res = cli.refused("vif", "plug", inst, "--tap", "anyname", code=INVALID, match="name the tap tap")
    assert "'anyname' is not the device name of this VIF" in res.err
