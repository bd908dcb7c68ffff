"""Fixed IPs, floating IPs and instances: happy paths, JSON against the listings."""

from __future__ import annotations

import uuid as uuidlib

import pytest

FLOAT_RANGE = "203.0.113.0/28"  # RFC 5737: 14 host addresses


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@pytest.fixture
def net(cli) -> dict:
    [n] = cli.json("network", "create", "--label", "net1", "--fixed-range-v4", "10.0.0.0/24")
    return n


def fixed_row(cli, address: str) -> dict:
    [row] = [r for r in cli.json("fixed", "list") if r["address"] == address]
    return row


def test_fixed_list_shows_every_address(cli, net) -> None:
    rows = cli.json("fixed", "list")
    assert len(rows) == 256
    assert rows[0] == {
        "network": "10.0.0.0/24",
        "address": "10.0.0.0",
        "instance_uuid": None,
        "hostname": None,
        "host": None,
        "allocated": False,
        "leased": False,
        "reserved": True,
    }
    assert [r["address"] for r in rows if r["reserved"]] == ["10.0.0.0", "10.0.0.1", "10.0.0.255"]
    lines = cli.ok("fixed", "list").out.splitlines()
    assert lines[0].split() == ["network", "address", "hostname", "host", "allocated", "leased", "reserved"]
    assert lines[1].split() == ["10.0.0.0/24", "10.0.0.0", "None", "None", "False", "False", "True"]
    assert len(lines) == 257


def test_fixed_reserve_and_unreserve(cli, net) -> None:
    assert cli.ok("fixed", "reserve", "--address", "10.0.0.10").out == "reserved 10.0.0.10\n"
    assert fixed_row(cli, "10.0.0.10")["reserved"] is True
    assert cli.ok("fixed", "unreserve", "--address", "10.0.0.10").out == "unreserved 10.0.0.10\n"
    assert fixed_row(cli, "10.0.0.10")["reserved"] is False


def test_fixed_list_by_host(cli, net) -> None:
    uuid = new_uuid()
    cli.ok("instance", "allocate", uuid, "--project-id", "p1", "--host", "h1", "--hostname", "web1")
    cli.ok("instance", "allocate", new_uuid(), "--project-id", "p1", "--host", "h2")
    rows = cli.json("fixed", "list", "--host", "h1")
    assert [(r["address"], r["hostname"], r["host"], r["instance_uuid"]) for r in rows] == [
        ("10.0.0.2", "web1", "h1", uuid)
    ]
    assert rows[0]["allocated"] is True
    text = cli.ok("fixed", "list", "--host", "h1").out.splitlines()
    assert text[1].split() == ["10.0.0.0/24", "10.0.0.2", "web1", "h1", "True", "False", "False"]


def test_fixed_cleanup_frees_old_deallocated_addresses(make_cli) -> None:
    cli = make_cli(config="force_dhcp_release=False\nfixed_ip_disassociate_timeout=0\n")
    cli.ok("network", "create", "--label", "n", "--fixed-range-v4", "10.0.0.0/24")
    uuid = new_uuid()
    cli.ok("instance", "allocate", uuid, "--project-id", "p1", "--host", "h1")
    res = cli.json("instance", "deallocate", uuid)
    assert res == {"uuid": uuid, "freed": [], "awaiting_release": ["10.0.0.2"]}
    assert fixed_row(cli, "10.0.0.2")["instance_uuid"] == uuid
    assert cli.ok("fixed", "cleanup").out == "freed 1 fixed IP\n"
    assert fixed_row(cli, "10.0.0.2")["instance_uuid"] is None
    assert cli.ok("fixed", "cleanup").out == "freed 0 fixed IPs\n"


def test_floating_pool_lifecycle(cli) -> None:
    res = cli.ok("floating", "create", "--ip-range", FLOAT_RANGE, "--pool", "public", "--interface", "eth9")
    assert res.out == "created 14 floating IPs in pool public\n"
    cli.ok("floating", "create", "--ip-range", "198.51.100.5")
    rows = cli.json("floating", "list")
    assert [r["address"] for r in rows] == [f"203.0.113.{i}" for i in range(1, 15)] + ["198.51.100.5"]
    assert rows[0] == {
        "id": 1,  # the Compute API's floating IP id
        "address": "203.0.113.1",
        "pool": "public",
        "interface": "eth9",
        "project_id": None,
        "instance_uuid": None,
        "fixed_address": None,
        "host": None,
        "auto_assigned": False,
    }
    assert rows[-1]["pool"] == "nova" and rows[-1]["interface"] == "eth0"
    assert cli.json("floating", "pools") == ["nova", "public"]
    assert cli.ok("floating", "pools").out == "nova\npublic\n"
    text = cli.ok("floating", "list").out.splitlines()
    assert text[0].split() == [
        "project", "address", "instance", "pool", "interface", "fixed_address", "host", "auto_assigned",
    ]  # fmt: skip
    assert text[1].split() == ["None", "203.0.113.1", "None", "public", "eth9", "None", "None", "False"]
    assert cli.ok("floating", "delete", "--ip-range", FLOAT_RANGE).out == "deleted 14 floating IPs\n"
    assert [r["address"] for r in cli.json("floating", "list")] == ["198.51.100.5"]


def test_floating_allocate_associate_disassociate_release(cli, net) -> None:
    cli.ok("floating", "create", "--ip-range", FLOAT_RANGE)
    uuid = new_uuid()
    cli.ok("instance", "allocate", uuid, "--project-id", "p1", "--host", "h1")
    got = cli.json("floating", "allocate", "--project-id", "p1")
    assert got["address"] == "203.0.113.1" and got["project_id"] == "p1"
    assert cli.json("floating", "list", "--project-id", "p1") == [got]
    res = cli.ok("floating", "allocate", "--project-id", "p1", "--pool", "nova")
    assert res.out == "allocated 203.0.113.2 to project p1\n"

    res = cli.ok("floating", "associate", "203.0.113.1", "--instance", uuid, "--fixed-address", "10.0.0.2")
    assert res.out == f"associated 203.0.113.1 with 10.0.0.2 of instance {uuid}\n"
    [row] = cli.json("floating", "list", "--host", "nethost")
    assert (row["address"], row["instance_uuid"], row["fixed_address"]) == ("203.0.113.1", uuid, "10.0.0.2")
    show = cli.json("instance", "show", uuid)
    ips = show["network_info"][0]["network"]["subnets"][0]["ips"]
    assert ips[0]["floating_ips"] == [{"address": "203.0.113.1", "type": "floating"}]

    res = cli.ok("floating", "disassociate", "203.0.113.1")
    assert res.out == f"disassociated 203.0.113.1 from 10.0.0.2 of instance {uuid}\n"
    assert cli.json("floating", "list", "--host", "nethost") == []
    res = cli.ok("floating", "release", "203.0.113.1", "--project-id", "p1")
    assert res.out == "released 203.0.113.1 from project p1\n"
    assert cli.json("floating", "release", "203.0.113.2")["address"] == "203.0.113.2"
    assert cli.json("floating", "list", "--project-id", "p1") == []


def test_instance_allocate_show_deallocate(cli, net) -> None:
    uuid = new_uuid()
    info = cli.json(
        "instance", "allocate", uuid, "--project-id", "p1", "--host", "h1",
        "--network", f"{net['uuid']}=10.0.0.50", "--hostname", "db1",
    )  # fmt: skip
    [vif] = info
    assert vif["network"]["id"] == net["uuid"]
    assert vif["network"]["bridge"] == "br100"
    [subnet] = vif["network"]["subnets"]
    assert subnet["gateway"] == "10.0.0.1" and subnet["dhcp_server"] == "10.0.0.1"
    assert [ip["address"] for ip in subnet["ips"]] == ["10.0.0.50"]
    row = fixed_row(cli, "10.0.0.50")
    assert (row["instance_uuid"], row["hostname"], row["host"], row["allocated"]) == (uuid, "db1", "h1", True)

    show = cli.json("instance", "show", uuid)
    assert show == {"uuid": uuid, "project_id": "p1", "host": "h1", "hostname": "db1", "network_info": info}
    text = cli.ok("instance", "show", uuid).out.splitlines()
    assert text[0] == f"instance {uuid}  project p1  host h1  hostname db1"
    assert "10.0.0.50" in text[1] and vif["address"] in text[1]

    res = cli.json("instance", "deallocate", uuid)
    assert res == {"uuid": uuid, "freed": ["10.0.0.50"], "awaiting_release": []}
    assert fixed_row(cli, "10.0.0.50")["instance_uuid"] is None


def test_instance_text_output(cli, net) -> None:
    uuid = new_uuid()
    res = cli.ok("instance", "allocate", uuid, "--project-id", "p1", "--host", "h1")
    assert res.out == f"allocated 10.0.0.2 to instance {uuid}\n"
    res = cli.ok("instance", "deallocate", uuid)
    assert res.out == f"deallocated instance {uuid}: freed 10.0.0.2\n"


def test_instance_on_several_networks(cli, net) -> None:
    [other] = cli.json("network", "create", "--label", "net2", "--fixed-range-v4", "10.1.0.0/24")
    uuid = new_uuid()
    info = cli.json(
        "instance", "allocate", uuid, "--project-id", "p1", "--host", "h1",
        "--network", other["uuid"], "--network", f"{net['uuid']}=10.0.0.9",
    )  # fmt: skip
    assert [v["network"]["id"] for v in info] == [other["uuid"], net["uuid"]]
    assert [v["network"]["subnets"][0]["ips"][0]["address"] for v in info] == ["10.1.0.2", "10.0.0.9"]
    assert cli.json("instance", "show", uuid)["network_info"] == info


def test_auto_assigned_floating_ip(make_cli) -> None:
    cli = make_cli(config="auto_assign_floating_ip=True\n")
    cli.ok("network", "create", "--label", "n", "--fixed-range-v4", "10.0.0.0/24")
    cli.ok("floating", "create", "--ip-range", FLOAT_RANGE)
    uuid = new_uuid()
    res = cli.ok("instance", "allocate", uuid, "--project-id", "p1", "--host", "h1")
    assert res.out == f"allocated 10.0.0.2 (floating 203.0.113.1) to instance {uuid}\n"
    [row] = cli.json("floating", "list", "--project-id", "p1")
    assert (row["auto_assigned"], row["fixed_address"]) == (True, "10.0.0.2")
    cli.ok("instance", "deallocate", uuid)
    assert cli.json("floating", "list", "--project-id", "p1") == []


def test_multi_host_requested_first_free_address(cli) -> None:
    [net] = cli.json(
        "network", "create", "--label", "mh", "--fixed-range-v4", "10.0.0.0/29", "--multi-host", "T"
    )
    # 10.0.0.2 is the first free address and host h1 has no gateway address yet: the
    # instance gets what it asked for, the host the next free one.
    uuid = new_uuid()
    cli.ok(
        "instance", "allocate", uuid, "--project-id", "p1", "--host", "h1",
        "--network", f"{net['uuid']}=10.0.0.2",
    )  # fmt: skip
    rows = {r["address"]: r for r in cli.json("fixed", "list", "--host", "h1")}
    assert rows["10.0.0.2"]["instance_uuid"] == uuid
    assert rows["10.0.0.3"]["instance_uuid"] is None and rows["10.0.0.3"]["host"] == "h1"


def test_instance_allocate_and_deallocate_several_in_one_transaction(cli, net) -> None:
    uuids = [new_uuid() for _ in range(3)]
    res = cli.ok("instance", "allocate", *uuids, "--project-id", "p1", "--host", "h1")
    assert res.out.splitlines() == [f"allocated 10.0.0.{i + 2} to instance {u}" for i, u in enumerate(uuids)]
    more = [new_uuid(), new_uuid()]
    out = cli.json("instance", "allocate", *more, "--project-id", "p1", "--host", "h2")
    assert [o["uuid"] for o in out] == more
    assert [o["network_info"] for o in out] == [cli.json("instance", "show", u)["network_info"] for u in more]
    # one instance that already has networks refuses them all, and changes nothing
    before = cli.snapshot()
    res = cli("instance", "allocate", new_uuid(), uuids[1], "--project-id", "p1", "--host", "h1")
    assert (
        res.code == 4
        and res.err == f"novanet: error: instance {uuids[1]} already has networks; deallocate it first\n"
    )
    res = cli(
        "instance",
        "allocate",
        new_uuid(),
        new_uuid(),
        "--project-id",
        "p1",
        "--host",
        "h1",
        "--hostname",
        "a",
    )
    assert res.code != 0 and res.err == "novanet: error: --hostname names one instance; give one UUID\n"
    res = cli("instance", "deallocate", uuids[0], new_uuid())
    assert res.code == 3 and len(res.err_lines) == 1
    assert cli.snapshot() == before
    done = cli.json("instance", "deallocate", *uuids, *more)
    assert [d["uuid"] for d in done] == uuids + more
    assert [d["freed"] for d in done[:3]] == [[f"10.0.0.{i + 2}"] for i in range(3)]
