"""The dnsmasq lease script against a real SQLite database set up through the service API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from novanet.agent import dhcpbridge
from novanet.agent.private import write_private
from novanet.domain.modes import FLATDHCP
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service.context import Ctx

if TYPE_CHECKING:  # the fixture lives in tests/unit/conftest.py
    from conftest import FlatDb


@dataclass
class World:
    ctx: Ctx
    url: str
    net: str
    instance: str
    mac: str
    address: str
    hostname: str


@pytest.fixture
def world(flat_db: FlatDb) -> World:
    ctx = flat_db.ctx
    inst = str(uuid.uuid4())
    (vif,) = I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(inst, "p1", "h1", hostname="vm1"))
    address = vif["network"]["subnets"][0]["ips"][0]["address"]
    return World(ctx, flat_db.url, flat_db.net, inst, vif["address"], address, "vm1")


def bridge(w: World, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = dhcpbridge.main(["--db", w.url, "--network", w.net, "--host", "h1", "--", *args], out, err)
    return code, out.getvalue(), err.getvalue()


def row(w: World, address: str) -> dict[str, Any]:
    (r,) = [r for r in X.list_fixed(w.ctx) if r["address"] == address]
    return r


def test_add_marks_the_address_leased(world: World) -> None:
    assert bridge(world, "add", world.mac, world.address, "vm1") == (0, "", "")
    r = row(world, world.address)
    assert r["leased"] and r["allocated"]


def test_old_counts_as_a_lease_and_hostname_is_optional(world: World) -> None:
    assert bridge(world, "old", world.mac.upper(), world.address)[0] == 0
    assert row(world, world.address)["leased"]


def test_del_of_an_allocated_address_only_clears_leased(world: World) -> None:
    bridge(world, "add", world.mac, world.address, "vm1")
    assert bridge(world, "del", world.mac, world.address, "vm1") == (0, "", "")
    r = row(world, world.address)
    assert not r["leased"] and r["allocated"] and r["instance_uuid"] == world.instance


def test_a_lease_reported_for_the_wrong_mac_is_ignored(world: World) -> None:
    code, _, err = bridge(world, "add", "fa:16:3e:ff:ff:ff", world.address)
    assert code == 0 and "add fa:16:3e:ff:ff:ff" in err and "ignored" in err  # logged by dnsmasq
    assert not row(world, world.address)["leased"]
    bridge(world, "add", world.mac, world.address)
    code, _, err = bridge(world, "del", "fa:16:3e:ff:ff:ff", world.address)
    assert code == 0 and "ignored" in err
    assert row(world, world.address)["leased"]


def test_del_after_deallocation_frees_the_address(world: World) -> None:
    bridge(world, "add", world.mac, world.address, "vm1")
    res = I.deallocate_for_instance(world.ctx, world.instance)
    assert res["awaiting_release"] == [world.address]
    assert bridge(world, "del", world.mac, world.address, "vm1")[0] == 0
    r = row(world, world.address)
    assert r["instance_uuid"] is None and not r["allocated"] and not r["leased"]


def test_init_prints_the_leases_of_the_network_in_dnsmasq_format(world: World) -> None:
    assert bridge(world, "init") == (0, "", "")  # nothing leased yet
    other = str(uuid.uuid4())
    (vif2,) = I.allocate_for_instance(world.ctx, FLATDHCP, I.AllocateRequest(other, "p1", "h1"))
    addr2 = vif2["network"]["subnets"][0]["ips"][0]["address"]
    before = int(dt.datetime.now(dt.UTC).timestamp())
    bridge(world, "add", world.mac, world.address, "vm1")
    bridge(world, "add", vif2["address"], addr2)
    code, out, err = bridge(world, "init")
    after = int(dt.datetime.now(dt.UTC).timestamp())
    assert code == 0 and err == ""
    lines = [ln.split(" ") for ln in out.splitlines()]
    assert [ln[1:] for ln in lines] == [
        [world.mac, world.address, "vm1", "*"],
        [vif2["address"], addr2, f"server-{other}", "*"],
    ]
    for ln in lines:  # the last lease event plus the lease time (120 s)
        assert before + 120 - 1 <= int(ln[0]) <= after + 120 + 1
    # a released lease is no longer listed
    bridge(world, "del", vif2["address"], addr2)
    assert len(bridge(world, "init")[1].splitlines()) == 1


def test_init_honours_the_lease_time_of_the_wrapper(world: World) -> None:
    bridge(world, "add", world.mac, world.address)
    out = io.StringIO()
    args = ["--db", world.url, "--network", world.net, "--lease-time", "86400", "--", "init"]
    assert dhcpbridge.main(args, out, io.StringIO()) == 0
    expiry = int(out.getvalue().split()[0])
    assert abs(expiry - (dt.datetime.now(dt.UTC).timestamp() + 86400)) < 5


def test_unknown_actions_are_ignored(world: World) -> None:
    assert bridge(world, "tftp", "1024", "10.0.0.9", "/srv/pxe") == (0, "", "")
    assert bridge(world, "arp-add", world.mac, world.address) == (0, "", "")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "fa:16:3e:00:00:01"], 2, "add needs MAC IP [HOSTNAME]"),
        (["add", "06-01:23:45:67:89:ab", "10.0.0.2"], 2, "invalid MAC address"),
        (["add", "fa:16:3e:00:00:01", "10.9.9.9"], 3, "not found"),
    ],
)
def test_errors_are_one_line_and_non_zero(world: World, args: list[str], code: int, message: str) -> None:
    got, out, err = bridge(world, *args)
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("novanet-dhcpbridge: ") and message in err


def test_usage_and_unknown_network_errors(world: World) -> None:
    err = io.StringIO()
    assert dhcpbridge.main(["init"], io.StringIO(), err) == 2
    assert err.getvalue().count("\n") == 1 and "--network" in err.getvalue()
    code, _, msg = bridge(dataclasses.replace(world, net=str(uuid.uuid4())), "init")
    assert code == 3 and "not found" in msg and msg.count("\n") == 1


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    err = io.StringIO()
    args = ["--db", f"sqlite:///{tmp_path}/empty.sqlite", "--network", str(uuid.uuid4()), "--", "init"]
    assert dhcpbridge.main(args, io.StringIO(), err) != 0
    assert err.getvalue().count("\n") == 1 and "no such table" in err.getvalue()


def test_runs_as_a_module_like_dnsmasq_runs_it(world: World, tmp_path: Path) -> None:
    db_file = tmp_path / "database"
    write_private(db_file, world.url)
    res = subprocess.run(
        [
            *dhcpbridge.script_argv(db_file=db_file),
            "--network",
            world.net,
            "--",
            "add",
            world.mac,
            world.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert row(world, world.address)["leased"]


def test_script_argv() -> None:
    assert dhcpbridge.script_argv(
        ["/etc/nova/nova.conf"], "/var/lib/novanet/networks/h/database", python="/py"
    ) == [
        "/py",
        "-m",
        "novanet.agent.dhcpbridge",
        "--config-file",
        "/etc/nova/nova.conf",
        "--db-file",
        "/var/lib/novanet/networks/h/database",
    ]
    assert dhcpbridge.script_argv()[0] == sys.executable


def test_the_database_url_file_must_be_private(world: World, tmp_path: Path) -> None:
    db_file = tmp_path / "database"
    write_private(db_file, world.url)
    assert db_file.stat().st_mode & 0o777 == 0o600
    args = ["--db-file", str(db_file), "--network", world.net, "--", "add", world.mac, world.address]
    err = io.StringIO()
    assert dhcpbridge.main(args, io.StringIO(), err) == 0, err.getvalue()
    db_file.chmod(0o644)  # someone loosened it: refused, the secret is not used from there
    err = io.StringIO()
    assert dhcpbridge.main(args, io.StringIO(), err) != 0
    assert err.getvalue().count("\n") == 1 and "mode 0600" in err.getvalue()
