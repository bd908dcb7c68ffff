"""The agent's reconcile loop against fakes (FakeLinks, FakeNft, dnsmasq's FakeRunner) and a
real SQLite database written through the service layer: what a partial sync sends, what
it reads, how failures and drift turn into full syncs, and how the change log is followed
when ids become visible out of order (PostgreSQL)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from novanet import config as C
from novanet.agent import loop
from novanet.agent import snapshot as snapmod
from novanet.agent.loop import (
    GAP_GRACE,
    GAP_WINDOW,
    MAX_TRACKED,
    PROBE_INTERVAL,
    Agent,
    ChangeCursor,
    Realizers,
)
from novanet.agent.main import ChangeWaiter
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.db.schema import changes
from novanet.domain.modes import FLATDHCP
from novanet.host.dnsmasq.realizer import DnsmasqManager, FakeRunner
from novanet.host.netlink.realizer import FakeLinks, LinkError
from novanet.host.nft.realizer import FakeNft, NftError
from novanet.service import fixed as X
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

HOST = "net1"
Json = Any


class RecordingNft(FakeNft):
    """FakeNft that keeps every applied transaction and can refuse the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[Json]] = []
        self.fail_next: Exception | None = None

    def apply(self, commands: list[Json]) -> None:
        if commands and self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        super().apply(commands)
        if commands:
            self.log.append(commands)

    def elements(self, family: str, name: str) -> list[Json]:
        for item in self.dump()["nftables"]:
            ((kind, obj),) = item.items()
            if kind in ("set", "map") and obj["family"] == family and obj["name"] == name:
                return list(obj.get("elem", []))
        return []


def edits(tx: list[Json]) -> dict[tuple[str, str], int]:
    """(verb, set) -> number of elements, for a transaction of element edits only; fails
    on anything else (a table, chain, rule or set command)."""
    out: dict[tuple[str, str], int] = {}
    for cmd in tx:
        ((verb, obj),) = cmd.items()
        assert list(obj) == ["element"], f"not an element edit: {cmd}"
        key = (verb, obj["element"]["name"])
        out[key] = out.get(key, 0) + len(obj["element"]["elem"])
    return out


def is_full(tx: list[Json]) -> bool:
    return tx[:3] == [
        {"add": {"table": {"family": "ip", "name": "novanet"}}},
        {"delete": {"table": {"family": "ip", "name": "novanet"}}},
        {"add": {"table": {"family": "ip", "name": "novanet"}}},
    ]


@dataclass
class Env:
    ctx: Ctx
    agent: Agent
    links: FakeLinks
    nft: RecordingNft
    runner: FakeRunner
    now: list[float]
    reads: list[str]

    def tick(self, seconds: float) -> None:
        self.now[0] += seconds

    def instance(self, host: str = HOST) -> tuple[str, str]:
        u = str(uuid.uuid4())
        info = I.allocate_for_instance(self.ctx, FLATDHCP, I.AllocateRequest(u, "p1", host))
        return u, info[0]["network"]["subnets"][0]["ips"][0]["address"]

    def floating(self, instance: str) -> str:
        address = F.allocate(self.ctx, "p1")["address"]
        F.associate(self.ctx, address, instance)
        return str(address)

    def dnat(self) -> dict[str, str]:
        return {k: v for k, v in self.nft.elements("ip", "floating-dnat")}

    def bound(self) -> set[str]:
        """The floating IPs local on pub0: our local routes through it."""
        return self.links.local_routes().get("pub0", set())

    def addresses32(self) -> set[str]:
        return {a.cidr for a in self.links.addresses("pub0") if a.cidr.endswith("/32")}

    def newest_change(self) -> int:
        with self.ctx.engine.connect() as conn:
            return snapmod.latest_change(conn)

    def renumber(self, old: int, new: int) -> None:
        """Give a logged change another id: how a commit order different from the id
        order looks to a reader."""
        with self.ctx.engine.begin() as conn:
            conn.execute(changes.update().where(changes.c.id == old).values(id=new))

    def forget(self, change_id: int) -> None:
        with self.ctx.engine.begin() as conn:
            conn.execute(changes.delete().where(changes.c.id == change_id))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    # dnsmasq's files must sit below directories others can traverse (agent.check says
    # so otherwise), which pytest's tmp_path is not.
    root = Path(tempfile.mkdtemp(prefix="novanet-loop-"))
    root.chmod(0o755)
    url = f"sqlite:///{root}/novanet.sqlite"
    engine = create_engine(url)
    ensure_schema(engine)
    cfg = C.load(
        overrides={
            "network_manager": "flatdhcp",
            "flat_network_bridge": "br100",
            "public_interface": "pub0",
            "my_ip": "203.0.113.1",
            "host": HOST,
            "network_host": HOST,
            "metadata_host": "",
            "force_dhcp_release": "True",
            "connection": url,
            "state_path": str(root),
        }
    )
    ctx = Ctx(engine, cfg)
    N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="private", fixed_range_v4="10.0.0.0/24"))
    F.create_pool(ctx, "203.0.113.16/28", interface="pub0")
    links = FakeLinks()
    links.add_nic("pub0")
    nft = RecordingNft()
    runner = FakeRunner()
    dhcp = DnsmasqManager(root / "networks", HOST, ["/bin/true"], runner)
    now = [1000.0]
    agent = Agent(ctx, HOST, Realizers(links, nft, dhcp, forwarding=lambda: None), clock=lambda: now[0])
    reads: list[str] = []
    real_read = snapmod.read_snapshot

    def counting_read(conn: sa.Connection, host: str, vpn_ip: str | None = None) -> Any:
        reads.append(host)
        return real_read(conn, host, vpn_ip)

    monkeypatch.setattr(snapmod, "read_snapshot", counting_read)
    try:
        yield Env(ctx, agent, links, nft, runner, now, reads)
    finally:
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


def synced(env: Env) -> Env:
    """One instance on the host, and the agent's first (full) sync done."""
    env.instance()
    env.agent.step()
    assert len(env.nft.log) == 1 and is_full(env.nft.log[0])
    assert env.agent.check() == []
    env.reads.clear()
    return env


# --- partial syncs: deltas only -------------------------------------------------------------


def test_floating_associate_is_one_element_delta_without_reading_the_snapshot(env: Env) -> None:
    synced(env)
    inst, fixed = env.instance()
    env.agent.partial_sync()
    env.reads.clear()
    txs, starts = len(env.nft.log), len(env.runner.started)

    fip = env.floating(inst)
    assert env.agent.partial_sync() is True
    assert env.reads == []  # only the changed floating IP was read
    assert len(env.nft.log) == txs + 1
    assert edits(env.nft.log[-1]) == {
        ("add", "floating-dnat"): 1,
        ("add", "floating-snat"): 1,
        ("add", "floating-out"): 1,
    }
    assert env.dnat() == {fip: fixed}
    assert env.bound() == {fip}
    assert len(env.runner.started) == starts and env.runner.hups() == 0  # dnsmasq untouched

    F.disassociate(env.ctx, fip)
    assert env.agent.partial_sync() is True
    assert env.reads == []
    assert edits(env.nft.log[-1]) == {
        ("delete", "floating-dnat"): 1,
        ("delete", "floating-snat"): 1,
        ("delete", "floating-out"): 1,
    }
    assert env.dnat() == {} and env.bound() == set()
    assert env.agent.check() == []


def test_a_batch_of_floating_changes_is_one_transaction(env: Env) -> None:
    synced(env)
    instances = [env.instance()[0] for _ in range(3)]
    env.agent.partial_sync()
    txs = len(env.nft.log)
    env.reads.clear()
    fips = [env.floating(u) for u in instances]
    F.disassociate(env.ctx, fips[0])
    assert env.agent.partial_sync() is True
    assert env.reads == []
    assert len(env.nft.log) == txs + 1
    assert edits(env.nft.log[-1])[("add", "floating-dnat")] == 2
    assert set(env.dnat()) == set(fips[1:])


def test_no_change_means_no_read_and_no_transaction(env: Env) -> None:
    synced(env)
    for _ in range(3):
        assert env.agent.partial_sync() is False
        env.tick(PROBE_INTERVAL + 0.1)
        env.agent.step()  # with the probe: nothing drifted
    assert len(env.nft.log) == 1 and env.reads == []
    assert env.agent.metrics.drift_repairs._value.get() == 0


def test_an_instance_change_rereads_only_that_instance_and_sends_only_its_elements(env: Env) -> None:
    synced(env)
    pid = env.agent.realizers.dhcp.running()
    env.instance()
    assert env.agent.partial_sync() is True
    assert env.reads == []  # the instance alone is read again, not the host's snapshot
    assert edits(env.nft.log[-1]) == {
        ("add", "vif-ports"): 1,
        ("add", "vif-macs"): 1,
        ("add", "vif-ips"): 1,
        ("add", "vif-chaddr-hi"): 1,
        ("add", "vif-chaddr-lo"): 1,
    }
    # the new reservation is a new hosts file: no restart, no SIGHUP
    assert env.agent.realizers.dhcp.running() == pid and env.runner.hups() == 0
    assert env.agent.check() == []


def test_a_network_this_host_stops_serving_is_torn_down_at_once(env: Env) -> None:
    inst, _ = env.instance()
    env.agent.step()
    assert env.agent.realizers.dhcp.running() and env.links.link("br100") is not None
    I.deallocate_for_instance(env.ctx, inst)  # the network's last instance
    env.agent.partial_sync()
    [net] = N.list_networks(env.ctx)
    N.delete_network(env.ctx, uuid=net.uuid)
    assert env.agent.partial_sync() is True
    assert env.agent.applied is not None and env.agent.applied.dhcp == ()
    assert env.agent.realizers.dhcp.running() == {} and env.runner.dump() == {}
    assert env.links.link("br100") is None  # bridge and gateway address gone
    assert env.agent.check() == []


# --- failures and drift: the next step is a full sync ------------------------------------------


def _fail_nft(env: Env) -> type[Exception]:
    env.nft.fail_next = NftError("Could not process rule: No buffer space available")
    return NftError


def _fail_links(env: Env) -> type[Exception]:
    real = env.links.set_local_routes

    def once(name: str, add: list[str], delete: list[str]) -> None:
        env.links.set_local_routes = real  # type: ignore[method-assign]
        raise LinkError(f"local routes on {name}: No buffer space available")

    env.links.set_local_routes = once  # type: ignore[method-assign]
    return LinkError


@pytest.mark.parametrize("fail", [_fail_nft, _fail_links], ids=["nft", "links"])
def test_a_failing_realizer_makes_the_next_step_a_full_sync(env: Env, fail: Any) -> None:
    synced(env)
    inst, fixed = env.instance()
    env.agent.step()
    error = fail(env)
    fip = env.floating(inst)
    with pytest.raises(error):
        env.agent.step()
    assert env.agent.needs_full
    assert env.agent.metrics.sync_failures.labels("partial")._value.get() == 1
    txs = len(env.nft.log)

    env.agent.step()
    assert not env.agent.needs_full
    assert len(env.nft.log) == txs + 1 and is_full(env.nft.log[-1])
    assert env.dnat() == {fip: fixed} and env.bound() == {fip}
    assert env.agent.check() == []
    env.reads.clear()
    assert env.agent.partial_sync() is False  # the failed change is not applied twice


def test_a_failing_dnsmasq_start_makes_the_next_step_a_full_sync(env: Env) -> None:
    synced(env)
    ((_, pid),) = env.agent.realizers.dhcp.running().items()
    env.runner.crash(pid)
    env.runner.fail_next_start = "failed to create listening socket: Address in use"
    env.instance()
    with pytest.raises(RuntimeError, match="dhcp"):
        env.agent.step()
    assert env.agent.needs_full
    env.agent.step()
    assert not env.agent.needs_full and env.agent.realizers.dhcp.running()
    assert env.agent.check() == []


def test_a_failed_full_sync_is_retried_as_a_full_sync(env: Env) -> None:
    env.instance()
    env.nft.fail_next = NftError("Could not process rule: Operation not supported")
    with pytest.raises(NftError):
        env.agent.step()
    assert env.agent.needs_full and env.agent.applied is None
    env.agent.step()
    assert not env.agent.needs_full and env.agent.check() == []


def test_the_probe_repairs_a_flush_a_killed_dnsmasq_and_a_deleted_bridge(env: Env) -> None:
    synced(env)
    tap = env.agent.applied.vifs[0].port  # type: ignore[union-attr]
    env.links.add_veth(tap, "peer0")
    env.links.set_master(tap, "br100")

    def repaired_after(damage: Any) -> None:
        damage()
        assert env.agent.check() != []
        txs = len(env.nft.log)
        env.tick(PROBE_INTERVAL + 0.1)
        env.agent.step()
        assert len(env.nft.log) == txs + 1 and is_full(env.nft.log[-1])
        assert env.agent.check() == []

    flush = [{"delete": {"table": {"family": f, "name": "novanet"}}} for f in ("ip", "bridge")]
    repaired_after(lambda: env.nft.apply(flush))
    repaired_after(lambda: env.runner.crash(next(iter(env.agent.realizers.dhcp.running().values()))))
    repaired_after(lambda: env.links.delete_link("br100"))
    assert env.links.link(tap).master == "br100"  # type: ignore[union-attr]
    assert env.agent.metrics.drift_repairs._value.get() == 3


def test_check_names_floating_addresses_bound_or_missing(env: Env) -> None:
    synced(env)
    inst, _ = env.instance()
    fip = env.floating(inst)
    env.agent.partial_sync()
    env.links.set_local_routes("pub0", [], [fip])
    stale = "203.0.113.30"
    env.links.set_local_routes("pub0", [stale], [])
    env.links.add_address("pub0", "198.51.100.7/32")  # an address, not a floating IP: not ours
    problems = env.agent.check()
    assert problems == [
        f"floating: 1 not bound on pub0: {fip}",
        f"floating: 1 bound on pub0 but not NATed here: {stale}",
    ]
    env.agent.full_sync()
    assert env.agent.check() == []
    assert env.bound() == {fip} and env.addresses32() == {"198.51.100.7/32"}


def test_floating_addresses_of_an_older_version_become_local_routes(env: Env) -> None:
    """Before the local routes, floating IPs were /32 addresses on their interface: a full
    sync turns them into routes (those NATed here) or removes them (the others); an
    address that is no floating IP stays."""
    synced(env)
    inst, _ = env.instance()
    fip = env.floating(inst)
    env.agent.partial_sync()
    other = str(F.allocate(env.ctx, "p1")["address"])  # a floating IP NATed nowhere
    env.links.set_local_routes("pub0", [], [fip])
    for a in (fip, other, "198.51.100.7"):
        env.links.add_address("pub0", f"{a}/32")
    assert env.agent.check() == [
        f"floating: 1 not bound on pub0: {fip}",
        f"floating: 2 bound as /32 addresses on pub0 (instead of local routes): {loop._some({fip, other})}",
    ]
    env.agent.full_sync()
    assert env.bound() == {fip} and env.addresses32() == {"198.51.100.7/32"}
    assert env.agent.check() == []


def test_the_periodic_resync_repairs_a_change_the_log_never_brought(env: Env) -> None:
    synced(env)
    inst, fixed = env.instance()
    env.agent.partial_sync()
    fip = env.floating(inst)
    env.forget(env.newest_change())  # as if the event were lost
    assert env.agent.partial_sync() is False
    env.tick(PROBE_INTERVAL + 0.1)
    env.agent.step()  # probe: the host is as applied
    assert env.dnat() == {}
    env.tick(env.ctx.config.agent_resync_interval)
    env.agent.step()
    assert env.dnat() == {fip: fixed}
    assert env.agent.metrics.drift_repairs._value.get() == 1


def test_a_queued_dhcp_release_is_sent_once(env: Env) -> None:
    synced(env)
    inst, fixed = env.instance()
    other, _ = env.instance()
    env.agent.partial_sync()
    mac = I.show(env.ctx, inst)["network_info"][0]["address"]
    X.lease(env.ctx, fixed, mac)
    I.deallocate_for_instance(env.ctx, inst)
    env.agent.partial_sync()
    releases = [c for c in env.runner.commands if c[0] == "dhcp_release"]
    assert releases == [["dhcp_release", "br100", fixed, mac]]
    assert next(r for r in X.list_fixed(env.ctx) if r["address"] == fixed)["instance_uuid"] is None
    for _ in range(2):  # floating-only batches keep the snapshot, and its old queue
        fip = env.floating(other)
        env.agent.partial_sync()
        F.disassociate(env.ctx, fip)
        F.release(env.ctx, fip)
        env.agent.partial_sync()
    assert [c for c in env.runner.commands if c[0] == "dhcp_release"] == releases


def test_the_sqlite_waiter_sleeps_until_a_commit(env: Env) -> None:
    stop = threading.Event()
    waiter = ChangeWaiter(env.ctx, stop)
    waiter.wait(5.0)  # the first wait returns at once: nothing was read yet
    t = time.monotonic()
    waiter.wait(0.3)
    assert time.monotonic() - t >= 0.3  # no commit, no wake-up
    timer = threading.Timer(0.2, lambda: env.instance())
    timer.start()
    t = time.monotonic()
    waiter.wait(10.0)
    assert 0.1 < time.monotonic() - t < 5.0
    timer.join()
    threading.Timer(0.1, stop.set).start()
    t = time.monotonic()
    waiter.wait(10.0)
    assert time.monotonic() - t < 5.0  # stopping wakes it too


# --- the change log, read when ids commit out of order ----------------------------------------


def test_a_change_committed_after_a_higher_id_is_still_applied(env: Env) -> None:
    synced(env)
    a, fixed_a = env.instance()
    b, fixed_b = env.instance()
    env.agent.partial_sync()
    base = env.newest_change()
    assert env.agent.last_change == base

    # B commits first with id base+2 while A's id base+1 is still in flight ...
    fip_b = env.floating(b)
    env.renumber(base + 1, base + 2)
    env.agent.partial_sync()
    assert env.dnat() == {fip_b: fixed_b}
    assert env.agent.last_change == base  # base+1 is a hole, maybe still committing
    # ... then A commits with the lower id.
    fip_a = env.floating(a)
    env.renumber(env.newest_change(), base + 1)
    assert env.agent.partial_sync() is True
    assert env.dnat() == {fip_a: fixed_a, fip_b: fixed_b}
    assert env.agent.last_change == base + 2
    assert env.agent.partial_sync() is False  # nothing read twice


def test_a_hole_that_never_fills_is_given_up_after_the_grace(env: Env) -> None:
    synced(env)
    inst, fixed = env.instance()
    env.agent.partial_sync()
    base = env.newest_change()
    fip = env.floating(inst)
    env.renumber(base + 1, base + 2)  # base+1 rolled back: it never appears
    env.agent.partial_sync()
    assert env.agent.last_change == base
    env.tick(GAP_GRACE - 1)
    assert env.agent.partial_sync() is False and env.agent.last_change == base
    env.tick(2)
    assert env.agent.partial_sync() is False and env.agent.last_change == base + 2
    assert env.dnat() == {fip: fixed}


def test_a_full_sync_watches_for_late_commits_below_the_newest_id(env: Env) -> None:
    env.instance()
    inst, fixed = env.instance()
    newest = env.newest_change()
    env.renumber(newest, newest + 1)  # id `newest` is in flight while the full sync reads
    env.agent.step()
    assert env.agent.last_change == newest - 1
    fip = env.floating(inst)
    env.renumber(env.newest_change(), newest)  # ... and commits afterwards
    env.reads.clear()
    assert env.agent.partial_sync() is True
    assert env.dnat() == {fip: fixed} and env.reads == []
    assert env.agent.last_change == newest + 1


def test_change_cursor() -> None:
    c = ChangeCursor()
    c.reset(5, [1, 2, 3, 4, 5], 0.0)
    assert (c.low, c.seen, c.holes) == (5, set(), {})
    c.mark([6, 8, 9], 1.0)
    assert (c.low, c.seen, c.holes) == (6, {8, 9}, {7: 1.0})
    assert c.unseen([(7, "floating", "x"), (8, "floating", "y")]) == [(7, "floating", "x")]
    c.mark([7], 2.0)
    assert (c.low, c.seen, c.holes) == (9, set(), {})
    c.mark([11], 3.0)
    c.mark([], 3.0 + GAP_GRACE)
    assert (c.low, c.holes) == (11, {})
    c.mark([11 + MAX_TRACKED + 1], 20.0)  # a jump too big to track id by id
    assert (c.low, c.seen, c.holes) == (12 + MAX_TRACKED, set(), {})
    big = GAP_WINDOW + 50
    c.reset(big, [i for i in range(51, big + 1) if i != big - 3], 30.0)
    assert (c.low, c.holes) == (big - 4, {big - 3: 30.0})
    assert c.seen == {big - 2, big - 1, big}


def test_module_constants_make_sense() -> None:
    assert loop.GAP_GRACE > PROBE_INTERVAL and GAP_WINDOW > 0
