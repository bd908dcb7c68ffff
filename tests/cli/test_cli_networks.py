"""`novanet network ...` and `novanet vpn change`: happy paths, JSON against the listing."""

from __future__ import annotations

import uuid as uuidlib


def test_db_sync_prints_revision(make_cli) -> None:
    cli = make_cli(fresh=True)
    res = cli.ok("db", "sync")
    assert res.out.startswith("database at revision ")
    assert len(res.out.splitlines()) == 1
    # Running it again is harmless.
    assert cli.ok("db", "sync").out == res.out


def test_sqlite_schema_is_created_on_first_use(make_cli) -> None:
    cli = make_cli(fresh=True)
    assert cli.json("network", "list") == []


def test_create_json_is_what_list_shows(cli) -> None:
    created = cli.json("network", "create", "--label", "net1", "--fixed-range-v4", "10.0.0.0/24")
    assert len(created) == 1
    net = created[0]
    assert net["cidr"] == "10.0.0.0/24"
    assert net["gateway"] == "10.0.0.1"
    assert net["dhcp_start"] == "10.0.0.2"
    assert net["broadcast"] == "10.0.0.255"
    assert net["bridge"] == "br100"
    assert net["manager"] == "flatdhcp"
    assert cli.json("network", "list") == created


def test_create_text_is_one_line(cli) -> None:
    res = cli.ok("network", "create", "--label", "net1", "--fixed-range-v4", "10.0.0.0/24")
    [net] = cli.json("network", "list")
    assert res.out == f"created network 10.0.0.0/24 (uuid {net['uuid']})\n"


def test_create_with_every_option(cli) -> None:
    uuid = str(uuidlib.uuid4())
    [net] = cli.json(
        "network", "create", "--label", "full", "--fixed-range-v4", "10.2.0.0/24",
        "--num-networks", "1", "--network-size", "256", "--bridge", "br7",
        "--bridge-interface", "eth1", "--multi-host", "T", "--dns1", "192.0.2.53",
        "--dns2", "192.0.2.54", "--gateway", "10.2.0.254", "--fixed-cidr", "10.2.0.128/25",
        "--project-id", "p1", "--uuid", uuid, "--priority", "5",
    )  # fmt: skip
    assert net["uuid"] == uuid
    assert (net["bridge"], net["bridge_interface"]) == ("br7", "eth1")
    assert net["multi_host"] is True
    assert (net["dns1"], net["dns2"]) == ("192.0.2.53", "192.0.2.54")
    assert net["gateway"] == "10.2.0.254"
    assert (net["project_id"], net["priority"]) == ("p1", 5)
    assert cli.json("network", "list") == [net]
    fixed = {r["address"]: r for r in cli.json("fixed", "list")}
    # --fixed-cidr: only the upper half is handed out.
    assert fixed["10.2.0.100"]["reserved"] is True
    assert fixed["10.2.0.130"]["reserved"] is False
    assert fixed["10.2.0.254"]["reserved"] is True


def test_create_several_networks(cli) -> None:
    created = cli.json(
        "network", "create", "--label", "many", "--fixed-range-v4", "10.4.0.0/16",
        "--num-networks", "3", "--network-size", "64",
    )  # fmt: skip
    assert [n["cidr"] for n in created] == ["10.4.0.0/26", "10.4.0.64/26", "10.4.0.128/26"]
    assert [n["label"] for n in created] == ["many_0", "many_1", "many_2"]
    assert cli.json("network", "list") == created
    assert len(cli.json("fixed", "list")) == 3 * 64
    res = cli.ok(
        "network", "create", "--label", "more", "--fixed-range-v4", "10.5.0.0/24", "--num-networks", "2"
    )
    assert res.out.startswith("created 2 networks: 10.5.0.0/25, 10.5.0.128/25")


def test_list_text_is_an_aligned_table(cli) -> None:
    cli.ok("network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24")
    cli.ok("network", "create", "--label", "b", "--fixed-range-v4", "10.100.0.0/20", "--network-size", "4096")
    nets = cli.json("network", "list")
    lines = cli.ok("network", "list").out.splitlines()
    assert lines[0].split() == [
        "id", "IPv4", "netmask", "gateway", "dhcp_start", "DNS1", "DNS2", "VlanID", "project", "uuid", "host",
    ]  # fmt: skip
    assert len(lines) == 1 + len(nets)
    col = lines[0].index("uuid")
    for line, net in zip(lines[1:], nets, strict=True):
        assert line[col:].startswith(net["uuid"])
        assert line.split()[1] == net["cidr"]
        assert line == line.rstrip()


def test_delete_by_range_and_by_uuid(cli) -> None:
    [a] = cli.json("network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24")
    [b] = cli.json("network", "create", "--label", "b", "--fixed-range-v4", "10.1.0.0/24")
    res = cli.ok("network", "delete", "--fixed-range", "10.0.0.0/24")
    assert res.out == f"deleted network 10.0.0.0/24 (uuid {a['uuid']})\n"
    assert cli.json("network", "list") == [b]
    cli.ok("network", "delete", "--uuid", b["uuid"])
    assert cli.json("network", "list") == []
    assert cli.json("fixed", "list") == []


def test_modify_project_and_host(cli) -> None:
    cli.ok("network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24")
    res = cli.ok("network", "modify", "10.0.0.0/24", "--project", "p1", "--host", "h1")
    assert res.out == "modified network 10.0.0.0/24: project p1, host h1\n"
    [net] = cli.json("network", "list")
    assert (net["project_id"], net["host"]) == ("p1", "h1")
    cli.ok("network", "modify", "10.0.0.0/24", "--disassociate-project", "--disassociate-host")
    [net] = cli.json("network", "list")
    assert (net["project_id"], net["host"]) == (None, None)


def test_vlan_networks_and_vpn_change(vlan_cli) -> None:
    cli = vlan_cli
    created = cli.json(
        "network", "create", "--label", "v", "--fixed-range-v4", "10.10.0.0/16",
        "--num-networks", "2", "--network-size", "256", "--vlan", "200", "--vpn", "2000",
    )  # fmt: skip
    assert [(n["vlan"], n["bridge"], n["vpn_public_port"]) for n in created] == [
        (200, "br200", 2000),
        (201, "br201", 2001),
    ]
    assert [n["dhcp_start"] for n in created] == ["10.10.0.3", "10.10.1.3"]
    assert [n["vpn_private_address"] for n in created] == ["10.10.0.2", "10.10.1.2"]
    # A second create continues after the highest VLAN in use.
    [third] = cli.json("network", "create", "--label", "w", "--fixed-range-v4", "10.11.0.0/24")
    assert third["vlan"] == 202
    assert cli.json("network", "list") == [*created, third]
    # The project's first instance takes the first free network; then its VPN can move.
    cli.ok("instance", "allocate", str(uuidlib.uuid4()), "--project-id", "p1", "--host", "h1")
    res = cli.ok("vpn", "change", "--project", "p1", "--ip", "198.51.100.7", "--port", "1194")
    assert res.out == "VPN of project p1 is 198.51.100.7:1194 (10.10.0.0/24)\n"
    net = cli.json("network", "list")[0]
    assert (net["project_id"], net["vpn_public_address"], net["vpn_public_port"]) == (
        "p1",
        "198.51.100.7",
        1194,
    )
