"""The lease-event spool: dnsmasq's add/del written by the real per-network script, applied
to a real SQLite database by the drainer it starts (or by ``drain``), in order, once."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from novanet.agent import dhcpbridge, leasespool
from novanet.agent.private import write_private
from novanet.domain.errors import DatabaseUnavailable
from novanet.domain.modes import FLATDHCP
from novanet.host.dnsmasq.config import NetworkPaths, lease_script
from novanet.host.model import DhcpServer
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
    vifs: list[tuple[str, str]]  # (mac, address)
    paths: NetworkPaths
    script: Path


@pytest.fixture
def world(tmp_path: Path, flat_db: FlatDb) -> Iterator[World]:
    ctx, url, net_uuid = flat_db.ctx, flat_db.url, flat_db.net
    vifs = []
    for _ in range(3):
        (vif,) = I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(str(uuid.uuid4()), "p1", "h1"))
        vifs.append((vif["address"], vif["network"]["subnets"][0]["ips"][0]["address"]))
    paths = NetworkPaths(tmp_path / "networks" / "h1" / net_uuid)
    paths.spool.mkdir(parents=True, mode=0o700)
    db_file = tmp_path / "database"
    write_private(db_file, url)
    server = DhcpServer(
        network_uuid=net_uuid,
        label="private",
        bridge="br100",
        listen_address="10.0.0.1",
        netmask="255.255.255.0",
        dhcp_start="10.0.0.2",
        router="10.0.0.1",
        dns_servers=(),
        domain="",
        lease_time=120,
    )
    script = paths.root / "dhcpbridge"
    script.write_text(lease_script(dhcpbridge.script_argv(db_file=db_file), server, "h1", paths))
    script.chmod(0o700)
    yield World(ctx, url, net_uuid, vifs, paths, script)


def leased(w: World) -> dict[str, bool]:
    return {r["address"]: bool(r["leased"]) for r in X.list_fixed(w.ctx) if r["instance_uuid"]}


def waiting(w: World) -> list[str]:
    return leasespool.pending(w.paths.spool)


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def put(w: World, name: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    (w.paths.spool / name).write_bytes(data)


def test_a_burst_of_events_from_the_real_script_reaches_the_database(world: World) -> None:
    # what dnsmasq does: one script run per event, one after the other
    for mac, address in world.vifs:
        t0 = time.monotonic()
        subprocess.run([str(world.script), "add", mac, address, "guest-name"], check=True, timeout=30)
        assert time.monotonic() - t0 < 2.0  # no Python start in dnsmasq's way (generous on a loaded host)
    wait_for(lambda: all(leased(world).values()) and not waiting(world), "every add applied")
    mac, address = world.vifs[0]
    subprocess.run([str(world.script), "del", mac, address], check=True, timeout=30)
    wait_for(lambda: not leased(world)[address] and not waiting(world), "the del applied")
    assert leased(world) == {a: a != address for _, a in world.vifs}


def test_events_are_applied_in_dnsmasq_order(world: World) -> None:
    (mac0, a0), (mac1, a1), _ = world.vifs
    put(world, "1000-1", f"add {mac0} {a0}\n")
    put(world, "1001-1", f"del {mac0} {a0}\n")
    put(world, "999-7", f"del {mac1} {a1}\n")  # older than its add: the add wins
    put(world, "1002-1", f"add {mac1} {a1}\n")
    report = leasespool.drain(world.ctx, world.paths.spool)
    assert (report.applied, report.ignored, report.bad, report.busy) == (4, 0, 0, False)
    assert leased(world)[a0] is False and leased(world)[a1] is True
    assert waiting(world) == []


@pytest.mark.parametrize(
    "content",
    [
        "add fa:16:3e:00:00:01\n",  # a field missing
        "old fa:16:3e:00:00:01 10.0.0.9\n",  # not an action the spool holds
        "add not-a-mac 10.0.0.9\n",
        "add fa:16:3e:00:00:01 10.0.0.999\n",
        b"add \xff\xfe 10.0.0.9\n",
        "add fa:16:3e:00:00:01 10.0.0.9 " + "x" * 200 + "\n",
    ],
)
def test_a_malformed_event_is_removed_counted_and_never_stops_the_others(
    world: World, content: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    mac, address = world.vifs[1]
    put(world, "1-1", content)
    put(world, "2-1", f"add {mac} {address}\n")
    report = leasespool.drain(world.ctx, world.paths.spool)
    assert (report.applied, report.bad) == (1, 1)
    assert leased(world)[address] and waiting(world) == []
    assert "removed unapplied" in caplog.text


def test_an_event_that_does_not_match_the_database_is_ignored_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    mac, address = world.vifs[0]
    put(world, "1-1", f"add fa:16:3e:ff:ff:ff {address}\n")  # another MAC
    put(world, "2-1", f"add {mac} 10.0.0.250\n")  # an address nobody holds
    put(world, "3-1", f"add {mac} 192.0.2.1\n")  # not in the database at all
    report = leasespool.drain(world.ctx, world.paths.spool)
    assert (report.applied, report.ignored) == (0, 3)
    assert not any(leased(world).values()) and waiting(world) == []
    assert caplog.text.count("ignored") == 3


def test_a_held_lock_leaves_the_events_to_its_holder(world: World) -> None:
    mac, address = world.vifs[0]
    put(world, "1-1", f"add {mac} {address}\n")
    with open(world.paths.spool / leasespool.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        report = leasespool.drain(world.ctx, world.paths.spool)
        assert report.busy and report.applied == 0 and waiting(world) == ["1-1"]
    assert leasespool.drain(world.ctx, world.paths.spool).applied == 1
    assert leased(world)[address]


def test_events_stay_on_disk_while_the_database_is_unavailable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mac, address = world.vifs[0]
    put(world, "1-1", f"add {mac} {address}\n")

    def down(_ctx: Ctx, _events: list[X.LeaseEvent]) -> list[X.LeaseResult]:
        raise DatabaseUnavailable("database unavailable: connection refused")

    with monkeypatch.context() as m:
        m.setattr(X, "lease_events", down)
        with pytest.raises(DatabaseUnavailable):
            leasespool.drain(world.ctx, world.paths.spool)
    assert waiting(world) == ["1-1"] and not leased(world)[address]
    assert leasespool.drain(world.ctx, world.paths.spool).applied == 1
    assert leased(world)[address]


def test_a_database_that_cannot_be_opened_keeps_the_events(world: World, tmp_path: Path) -> None:
    """The background drainer against a database it cannot reach: one line in its log,
    a non-zero exit, the event kept for the next drainer."""
    mac, address = world.vifs[0]
    put(world, "1-1", f"add {mac} {address}\n")
    err = io.StringIO()
    bad = f"sqlite:///{tmp_path}/missing-dir/db.sqlite"
    args = ["--db", bad, "--network", world.net, "--spool", str(world.paths.spool), "--", "drain"]
    assert dhcpbridge.main(args, io.StringIO(), err) != 0
    assert err.getvalue().count("\n") == 1
    assert waiting(world) == ["1-1"]


def test_init_applies_the_spool_before_it_prints_the_leases(world: World) -> None:
    mac, address = world.vifs[2]
    put(world, "1-1", f"add {mac} {address}\n")
    out, err = io.StringIO(), io.StringIO()
    args = ["--db", world.url, "--network", world.net, "--spool", str(world.paths.spool), "--", "init"]
    assert dhcpbridge.main(args, out, err) == 0, err.getvalue()
    (line,) = out.getvalue().splitlines()
    assert f" {mac} {address} " in line and waiting(world) == []


def test_a_temporary_file_left_by_a_dead_script_is_removed_once_stale(world: World) -> None:
    put(world, ".123-4", "add fa:16:3e")
    old = time.time() - 2 * leasespool.STALE_TEMP
    os.utime(world.paths.spool / ".123-4", (old, old))
    put(world, ".125-4", "add fa:16:3e")  # being written now: left alone
    leasespool.drain(world.ctx, world.paths.spool)
    names = set(os.listdir(world.paths.spool))
    assert ".123-4" not in names and ".125-4" in names
