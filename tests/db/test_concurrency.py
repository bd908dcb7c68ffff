"""Concurrency proofs for IPAM: many OS processes allocating from one pool at once.

Every test starts real processes with the "spawn" start method (forking a process that
already holds SQLAlchemy engines and open connections is unsafe); each child builds its
own engine from the URL, waits on a shared barrier so the children start together, runs
its first call, waits on the barrier again so that every child is in flight before any
goes on (the overlap is made, not hoped for from the scheduler), runs the rest and sends
back what it saw (addresses, MACs, error codes). The parent then
checks the outcome against the database with plain SQL, not through the service layer.

Runs on SQLite and PostgreSQL (``db_url`` fixture).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queuelib
import random
import time
import traceback
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.domain.errors import NovanetError
from novanet.domain.modes import FLATDHCP, VLAN, Mode
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

WORKERS = 8
CALLS = 100
# How long children wait for each other at the start line, and how long the parent
# waits for all results: a hang fails the test instead of blocking CI.
BARRIER_TIMEOUT = 60.0
RESULTS_TIMEOUT = 120.0

FLATDHCP_OVERRIDES: dict[str, Any] = {
    "network_manager": "flatdhcp",
    "flat_network_bridge": "br100",
    "host": "compute1",
    "quota_floating_ips": -1,
}
VLAN_OVERRIDES: dict[str, Any] = {
    "network_manager": "vlan",
    "host": "compute1",
    "my_ip": "192.0.2.10",
    "vpn_ip": "192.0.2.10",
}


# --- children ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One use-case call a child makes."""

    # "fixed" (allocate), "churn" (allocate, then deallocate), "vlan-churn" (allocate,
    # deallocate, hand the network back: disassociate its project), "floating", or
    # "batch" (allocate every instance of ``batch`` in one transaction)
    op: str
    project: str
    instance_uuid: str | None = None
    host: str = "compute1"
    networks: tuple[str, ...] = ()  # requested networks; () = the default choice
    batch: tuple[str, ...] = ()  # instance uuids of a "batch" call


@dataclass(frozen=True)
class Job:
    worker: int
    url: str
    overrides: dict[str, Any]  # configuration options of this child
    calls: tuple[Call, ...]


@dataclass
class Outcome:
    """What one child saw, sent back to the parent through a queue."""

    worker: int
    ok: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[Call, str, str]] = field(default_factory=list)  # call, code, message
    unexpected: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    done_at: list[float] = field(default_factory=list)  # completion time of each call


def _one_call(ctx: Ctx, mode: Mode, call: Call) -> dict[str, Any]:
    if call.op == "batch":
        reqs = [I.AllocateRequest(u, call.project, call.host) for u in call.batch]
        infos = I.allocate_many(ctx, mode, reqs)
        return {"batch": [_seen(call, u, info) for u, info in zip(call.batch, infos, strict=True)]}
    if call.op in ("fixed", "churn", "vlan-churn"):
        assert call.instance_uuid is not None
        requested = [I.RequestedNetwork(n) for n in call.networks]
        info = I.allocate_for_instance(
            ctx, mode, I.AllocateRequest(call.instance_uuid, call.project, call.host, requested)
        )
        out = _seen(call, call.instance_uuid, info)
        if call.op in ("churn", "vlan-churn"):
            out["freed"] = I.deallocate_for_instance(ctx, call.instance_uuid)["freed"]
        if call.op == "vlan-churn":
            N.modify_network(ctx, out["network"], disassociate_project=True)
        return out
    if call.op == "floating":
        row = F.allocate(ctx, call.project)
        return {"project": call.project, "address": row["address"], "owner": row["project_id"]}
    raise AssertionError(f"unknown op {call.op}")


def _seen(call: Call, instance_uuid: str, info: list[dict[str, Any]]) -> dict[str, Any]:
    [vif] = info  # one network, one VIF
    [subnet] = vif["network"]["subnets"]
    [ip] = subnet["ips"]
    return {
        "instance_uuid": instance_uuid,
        "project": call.project,
        "host": call.host,
        "address": ip["address"],
        "mac": vif["address"],
        "network": vif["network"]["id"],
        "gateway": subnet["gateway"],
    }


def _worker(job: Job, barrier: Any, results: Any) -> None:
    """Child process body: its own engine, wait at the start line, run the calls."""
    out = Outcome(job.worker)
    try:
        cfg = C.load(overrides={**job.overrides, "connection": job.url})
        engine = create_engine(job.url)
        try:
            # Connect before the start line so the race is about allocation, not logins.
            with engine.connect() as conn:
                conn.info["begin_mode"] = "DEFERRED"  # SQLite: no write lock for this
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
            ctx = Ctx(engine, cfg)
            barrier.wait(BARRIER_TIMEOUT)
            out.start = time.monotonic()
            for i, call in enumerate(job.calls):
                try:
                    out.ok.append(_one_call(ctx, cfg.network_manager, call))
                except NovanetError as exc:
                    out.errors.append((call, exc.code, exc.message))
                out.done_at.append(time.monotonic())
                if i == 0:
                    # Every child has finished one call and none has finished all: the
                    # rest of the calls of all children run at the same time.
                    barrier.wait(BARRIER_TIMEOUT)
            out.end = time.monotonic()
        finally:
            engine.dispose()
    except BaseException as exc:  # reported to the parent, which fails the test
        barrier.abort()  # the others must not wait for this child at the barrier
        out.unexpected.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    results.put(out)


def _run(
    url: str,
    overrides: dict[str, Any] | list[dict[str, Any]],
    calls_per_worker: list[tuple[Call, ...]],
) -> list[Outcome]:
    """Run one child per entry of ``calls_per_worker``, all released at once; ``overrides``
    is the configuration of all children or a list with one per child."""
    spawn = mp.get_context("spawn")
    n = len(calls_per_worker)
    options = overrides if isinstance(overrides, list) else [overrides] * n
    barrier = spawn.Barrier(n)
    results = spawn.Queue()
    procs = [
        spawn.Process(
            target=_worker,
            args=(Job(i, url, options[i], calls), barrier, results),
            name=f"novanet-race-{i}",
        )
        for i, calls in enumerate(calls_per_worker)
    ]
    outcomes: list[Outcome] = []
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + RESULTS_TIMEOUT
        # Drain the queue before joining: a child blocks on exit until its data is read.
        while len(outcomes) < n:
            try:
                outcomes.append(results.get(timeout=1.0))
            except queuelib.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and len(outcomes) < n:
                    # Give the queue a last chance: the child may have reported, then died.
                    try:
                        outcomes.append(results.get(timeout=2.0))
                        continue
                    except queuelib.Empty:
                        pass
                    pytest.fail(f"child {dead[0].name} died with exit code {dead[0].exitcode}")
                if time.monotonic() > deadline:
                    pytest.fail(f"only {len(outcomes)} of {n} children reported in {RESULTS_TIMEOUT} s")
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0, f"{p.name} exit code {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        results.close()
        results.join_thread()
    outcomes.sort(key=lambda o: o.worker)
    problems = [u for o in outcomes for u in o.unexpected]
    assert not problems, "children failed unexpectedly:\n" + "\n".join(problems)
    _assert_overlap(outcomes)
    return outcomes


def _assert_overlap(outcomes: list[Outcome]) -> None:
    """The children really ran at the same time, not one after another: each finished its
    first call before any child finished its last (the second barrier makes it so; this
    checks that it did)."""
    assert max(o.done_at[0] for o in outcomes) < min(o.end for o in outcomes), (
        "children did not overlap: "
        + ", ".join(f"w{o.worker}=[{o.start:.3f}, {o.end:.3f}]" for o in outcomes)
    )
    timeline = sorted((t, o.worker) for o in outcomes for t in o.done_at)
    first = {w for _, w in timeline[: len(outcomes)]}
    assert len(first) == len(outcomes), f"the first {len(outcomes)} completions came from {sorted(first)}"


# --- parent helpers ------------------------------------------------------------------


def _setup(url: str, overrides: dict[str, Any]) -> tuple[Ctx, sa.Engine]:
    cfg = C.load(overrides={**overrides, "connection": url})
    engine = create_engine(url)
    sync(engine)  # SQLite would migrate itself; PostgreSQL needs it done on purpose
    return Ctx(engine, cfg), engine


@pytest.fixture
def check_db(db_url: str) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine (not novanet's) for checking results independently."""
    engine = sa.create_engine(db_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def _instance_calls(worker: int, count: int, projects: int = 10) -> tuple[Call, ...]:
    return tuple(
        Call(
            "fixed",
            project=f"proj-{(worker * count + i) % projects}",
            instance_uuid=str(uuidlib.UUID(int=(worker + 1) << 64 | i)),
        )
        for i in range(count)
    )


def _flatdhcp_network(ctx: Ctx, cidr: str) -> str:
    size = 2 ** (32 - int(cidr.split("/")[1]))
    req = N.NetworkRequest("race", cidr, num_networks=1, network_size=size)
    [net] = N.create_networks(ctx, FLATDHCP, req)
    return net.uuid


def _free_fixed(engine: sa.Engine) -> int:
    return int(
        _scalar(
            engine,
            "SELECT count(*) FROM fixed_ips WHERE instance_uuid IS NULL AND host IS NULL AND reserved = :f",
            f=False,
        )
    )


def _successes(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [ok for o in outcomes for ok in o.ok]


def _error_codes(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(code for o in outcomes for _call, code, _msg in o.errors)


def _check_fixed_rows(engine: sa.Engine, ok: list[dict[str, Any]]) -> None:
    """The database holds exactly the allocations the children were told about."""
    held = _rows(
        engine,
        "SELECT f.instance_uuid, f.address, v.address AS mac, f.allocated, f.reserved"
        " FROM fixed_ips f LEFT JOIN virtual_interfaces v ON v.id = f.virtual_interface_id"
        " WHERE f.instance_uuid IS NOT NULL",
    )
    assert len(held) == len(ok)
    assert len({r.instance_uuid for r in held}) == len(ok)
    assert len({r.address for r in held}) == len(ok)
    assert all(r.allocated and not r.reserved for r in held)
    assert {(r.instance_uuid, r.address, r.mac) for r in held} == {
        (s["instance_uuid"], s["address"], s["mac"]) for s in ok
    }
    vifs = _rows(engine, "SELECT instance_uuid, address FROM virtual_interfaces")
    assert len(vifs) == len(ok)
    assert len({v.address for v in vifs}) == len(ok), "a MAC was handed out twice"
    assert len({v.instance_uuid for v in vifs}) == len(ok)
    assert _scalar(engine, "SELECT count(*) FROM instances") == len(ok)


# --- fixed IPs -----------------------------------------------------------------------


def test_fixed_allocation_race_on_a_large_network(db_url: str, check_db: sa.Engine) -> None:
    """8 processes x 100 instances on one FlatDHCP /22: every call succeeds, no address
    or MAC twice."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    _flatdhcp_network(ctx, "10.40.0.0/22")
    engine.dispose()
    assert _free_fixed(check_db) == 1024 - 3

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_instance_calls(w, CALLS) for w in range(WORKERS)])

    ok = _successes(outcomes)
    assert _error_codes(outcomes) == Counter()
    assert len(ok) == WORKERS * CALLS
    assert len({s["address"] for s in ok}) == WORKERS * CALLS
    assert len({s["mac"] for s in ok}) == WORKERS * CALLS
    _check_fixed_rows(check_db, ok)
    assert _free_fixed(check_db) == 1024 - 3 - WORKERS * CALLS


BATCH = 10


def _batch_calls(worker: int, batches: int) -> tuple[Call, ...]:
    return tuple(
        Call(
            "batch",
            project=f"proj-{worker % 3}",
            host=f"compute-{worker % 2}",
            batch=tuple(str(uuidlib.UUID(int=(worker + 1) << 64 | b << 16 | i)) for i in range(BATCH)),
        )
        for b in range(batches)
    )


def _flat(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [one for ok in _successes(outcomes) for one in ok["batch"]]


def test_batch_allocation_race(db_url: str, check_db: sa.Engine) -> None:
    """8 processes x 10 batches of 10 instances, each batch one transaction, on one
    FlatDHCP /22: every batch succeeds, no address or MAC twice."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    _flatdhcp_network(ctx, "10.42.0.0/22")
    engine.dispose()

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_batch_calls(w, 10) for w in range(WORKERS)])

    assert _error_codes(outcomes) == Counter()
    ok = _flat(outcomes)
    assert len(ok) == WORKERS * 10 * BATCH
    assert len({s["address"] for s in ok}) == len(ok)
    assert len({s["mac"] for s in ok}) == len(ok)
    _check_fixed_rows(check_db, ok)
    assert _free_fixed(check_db) == 1024 - 3 - len(ok)
    # every instance is in the change log, scoped to its host
    logged = _rows(check_db, "SELECT ref, host FROM changes WHERE kind = 'instance' AND host IS NOT NULL")
    assert {(r.ref, r.host) for r in logged} >= {(s["instance_uuid"], s["host"]) for s in ok}


def test_batch_allocation_race_exhausts_a_small_network(db_url: str, check_db: sa.Engine) -> None:
    """400 instances in batches of 10 on a /24 (253 free): batches are all or nothing, so
    whole batches succeed until fewer than 10 addresses are left; a refused batch holds
    nothing."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    _flatdhcp_network(ctx, "10.43.0.0/24")
    engine.dispose()
    free = _free_fixed(check_db)

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_batch_calls(w, 5) for w in range(WORKERS)])

    ok = _flat(outcomes)
    assert len(ok) == free - free % BATCH
    assert _error_codes(outcomes) == Counter({"no_more_fixed_ips": WORKERS * 5 - len(ok) // BATCH})
    _check_fixed_rows(check_db, ok)
    assert _free_fixed(check_db) == free % BATCH


def test_fixed_allocation_race_exhausts_a_small_network(db_url: str, check_db: sa.Engine) -> None:
    """800 attempts on a /24: exactly the free addresses are handed out, every other call
    fails with no_more_fixed_ips and leaves nothing behind."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    _flatdhcp_network(ctx, "10.41.0.0/24")
    engine.dispose()
    free = _free_fixed(check_db)
    # FlatDHCP reserves the network address, the gateway (.1) and the broadcast.
    assert free == 256 - 3

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_instance_calls(w, CALLS) for w in range(WORKERS)])

    ok = _successes(outcomes)
    assert len(ok) == free
    assert _error_codes(outcomes) == Counter({"no_more_fixed_ips": WORKERS * CALLS - free})
    assert len({s["address"] for s in ok}) == free
    _check_fixed_rows(check_db, ok)
    assert _free_fixed(check_db) == 0
    # Structural addresses were never handed out.
    assert {s["address"] for s in ok}.isdisjoint({"10.41.0.0", "10.41.0.1", "10.41.0.255"})


def test_multi_host_gateway_address_race(db_url: str, check_db: sa.Engine) -> None:
    """Multi-host: the first instance on a host takes the host's own gateway/DHCP address.
    8 processes boot 50 instances each, spread over 4 hosts that are all new: every host
    ends with exactly one address, and every instance on it got that address as gateway."""
    overrides = {**FLATDHCP_OVERRIDES, "multi_host": True}
    ctx, engine = _setup(db_url, overrides)
    _flatdhcp_network(ctx, "10.42.0.0/22")
    engine.dispose()
    hosts = [f"compute{i}" for i in range(4)]
    per_worker = [
        tuple(
            Call(
                "fixed",
                project="mh",
                instance_uuid=str(uuidlib.UUID(int=(w + 1) << 64 | i)),
                host=hosts[(w + i) % len(hosts)],
            )
            for i in range(50)
        )
        for w in range(WORKERS)
    ]

    outcomes = _run(db_url, overrides, per_worker)

    ok = _successes(outcomes)
    assert _error_codes(outcomes) == Counter()
    assert len(ok) == WORKERS * 50
    host_rows = _rows(check_db, "SELECT host, address, instance_uuid FROM fixed_ips WHERE host IS NOT NULL")
    assert sorted(r.host for r in host_rows) == hosts, "each host holds exactly one address"
    assert all(r.instance_uuid is None for r in host_rows)
    own = {r.host: r.address for r in host_rows}
    for s in ok:
        assert s["gateway"] == own[s["host"]], s
    assert {s["address"] for s in ok}.isdisjoint(own.values())
    _check_fixed_rows(check_db, ok)


def test_allocate_and_deallocate_churn(db_url: str, check_db: sa.Engine) -> None:
    """8 processes allocate 60 instances each on a /24 and deallocate every other one at
    once, so freed addresses are reused while others allocate: what remains is exactly
    the kept instances, each with its own address, VIF and MAC."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    _flatdhcp_network(ctx, "10.43.0.0/24")
    engine.dispose()
    per_worker = [
        tuple(
            Call(
                "churn" if i % 2 else "fixed",
                project=f"churn-{w}",
                instance_uuid=str(uuidlib.UUID(int=(w + 1) << 64 | i)),
            )
            for i in range(60)
        )
        for w in range(WORKERS)
    ]

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, per_worker)

    ok = _successes(outcomes)
    assert _error_codes(outcomes) == Counter()
    assert len(ok) == WORKERS * 60
    gone = [s for s in ok if "freed" in s]
    kept = [s for s in ok if "freed" not in s]
    assert all(s["freed"] == [s["address"]] for s in gone)
    assert len(kept) == WORKERS * 30
    assert len({s["address"] for s in kept}) == len(kept)
    _check_fixed_rows(check_db, kept)
    assert _free_fixed(check_db) == 253 - len(kept)
    # Queued DHCP releases (if any) name deallocated VIFs only, never a live one.
    queued = {(r.address, r.mac) for r in _rows(check_db, "SELECT address, mac FROM dhcp_releases")}
    assert queued <= {(s["address"], s["mac"]) for s in gone}


def test_locked_but_free_address_is_not_exhaustion(db_url: str, check_db: sa.Engine) -> None:
    """A free address that another transaction has locked, but will give back, is still
    free: waiting for it (or trying again) is right, "no more fixed IPs" is not.

    Network A has one free address, network B none. Child 0 keeps asking for an instance
    on A and B: each unit takes A's address, then fails on B and rolls back, so the
    address is never really taken. Child 1 allocates on A and deallocates again, over and
    over; nothing else ever holds A's address, so every one of its calls must succeed.
    """
    # PostgreSQL picks with FOR UPDATE SKIP LOCKED; when that finds nothing, "no more"
    # is only true after waiting for the rows others hold.
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    [net_a] = N.create_networks(ctx, FLATDHCP, N.NetworkRequest("a", "10.44.0.0/29", network_size=8))
    [net_b] = N.create_networks(ctx, FLATDHCP, N.NetworkRequest("b", "10.44.1.0/29", network_size=8))
    # 8 addresses - 3 reserved = 5 each: fill B, leave exactly one free on A.
    for i, net in enumerate([net_b] * 5 + [net_a] * 4):
        I.allocate_for_instance(
            ctx,
            FLATDHCP,
            I.AllocateRequest(
                str(uuidlib.UUID(int=0xF << 64 | i)), "p", "compute1", [I.RequestedNetwork(net.uuid)]
            ),
        )
    engine.dispose()
    assert _free_fixed(check_db) == 1

    doomed = tuple(
        Call("fixed", "p", str(uuidlib.UUID(int=1 << 64 | i)), networks=(net_a.uuid, net_b.uuid))
        for i in range(400)
    )
    churn = tuple(
        Call("churn", "p", str(uuidlib.UUID(int=2 << 64 | i)), networks=(net_a.uuid,)) for i in range(200)
    )
    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [doomed, churn])

    assert {code for _, code, _ in outcomes[0].errors} == {"no_more_fixed_ips"}
    assert not outcomes[0].ok
    spurious = [(call.instance_uuid, msg) for call, _, msg in outcomes[1].errors]
    assert not spurious, f"{len(spurious)} of {len(churn)} allocations refused: {spurious[0]}"
    assert len(outcomes[1].ok) == len(churn)
    assert _free_fixed(check_db) == 1


# --- floating IPs --------------------------------------------------------------------


def _floating_calls(worker: int, count: int, projects: int = 25) -> tuple[Call, ...]:
    return tuple(Call("floating", project=f"tenant-{(worker * 7 + i) % projects}") for i in range(count))


def _check_floating_rows(engine: sa.Engine, ok: list[dict[str, Any]]) -> None:
    held = _rows(engine, "SELECT address, project_id FROM floating_ips WHERE project_id IS NOT NULL")
    assert len(held) == len(ok)
    assert Counter((r.address, r.project_id) for r in held) == Counter(
        (s["address"], s["project"]) for s in ok
    )
    assert all(s["owner"] == s["project"] for s in ok)


def test_floating_allocation_race(db_url: str, check_db: sa.Engine) -> None:
    """8 processes x 100 floating allocations across 25 projects from a 1022-address pool."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    assert F.create_pool(ctx, "198.18.0.0/22") == 1022
    engine.dispose()

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_floating_calls(w, CALLS) for w in range(WORKERS)])

    ok = _successes(outcomes)
    assert _error_codes(outcomes) == Counter()
    assert len(ok) == WORKERS * CALLS
    assert len({s["address"] for s in ok}) == WORKERS * CALLS
    _check_floating_rows(check_db, ok)
    assert _scalar(check_db, "SELECT count(*) FROM floating_ips WHERE project_id IS NULL") == 1022 - 800


def test_floating_allocation_race_exhausts_the_pool(db_url: str, check_db: sa.Engine) -> None:
    """800 attempts on a 254-address pool: 254 successes, the rest no_more_floating_ips."""
    ctx, engine = _setup(db_url, FLATDHCP_OVERRIDES)
    size = F.create_pool(ctx, "203.0.113.0/24")
    engine.dispose()
    assert size == 254

    outcomes = _run(db_url, FLATDHCP_OVERRIDES, [_floating_calls(w, CALLS) for w in range(WORKERS)])

    ok = _successes(outcomes)
    assert len(ok) == size
    assert _error_codes(outcomes) == Counter({"no_more_floating_ips": WORKERS * CALLS - size})
    assert len({s["address"] for s in ok}) == size
    _check_floating_rows(check_db, ok)
    assert _scalar(check_db, "SELECT count(*) FROM floating_ips WHERE project_id IS NULL") == 0


def test_floating_quota_race(db_url: str, check_db: sa.Engine) -> None:
    """8 processes x 10 allocations for ONE project with quota 10: exactly 10 succeed; the
    check-then-take of the quota cannot be raced past."""
    overrides = {**FLATDHCP_OVERRIDES, "quota_floating_ips": 10}
    ctx, engine = _setup(db_url, overrides)
    F.create_pool(ctx, "198.18.4.0/24")
    engine.dispose()

    calls = tuple(Call("floating", project="greedy") for _ in range(10))
    outcomes = _run(db_url, overrides, [calls] * WORKERS)

    ok = _successes(outcomes)
    assert len(ok) == 10
    assert _error_codes(outcomes) == Counter({"quota_exceeded": WORKERS * 10 - 10})
    assert _scalar(check_db, "SELECT count(*) FROM floating_ips WHERE project_id = 'greedy'") == 10
    _check_floating_rows(check_db, ok)


# --- VLAN project association ----------------------------------------------------------


def test_vlan_project_association_race(db_url: str, check_db: sa.Engine) -> None:
    """Two processes boot instances of 48 projects (each project twice per process, in a
    different shuffled order) against 12 VLAN networks: each network goes to exactly one
    project, no project gets two networks, and a project either got a network for all its
    instances or none."""
    projects = [f"vproj-{i:02d}" for i in range(48)]
    nets = 12
    ctx, engine = _setup(db_url, VLAN_OVERRIDES)
    created = N.create_networks(
        ctx, VLAN, N.NetworkRequest("vlan", "10.50.0.0/22", num_networks=nets, network_size=16)
    )
    engine.dispose()
    assert len(created) == nets

    per_worker = []
    for w in range(2):
        order = projects * 2
        random.Random(1000 + w).shuffle(order)
        per_worker.append(
            tuple(
                Call("fixed", project=p, instance_uuid=str(uuidlib.UUID(int=(w + 1) << 64 | i)))
                for i, p in enumerate(order)
            )
        )
    outcomes = _run(db_url, VLAN_OVERRIDES, per_worker)

    ok = _successes(outcomes)
    errors = [(call, code) for o in outcomes for call, code, _ in o.errors]
    assert {code for _, code in errors} <= {"no_more_networks"}

    owners = _rows(check_db, "SELECT uuid, project_id FROM networks")
    owned = {r.uuid: r.project_id for r in owners if r.project_id is not None}
    assert len(owned) == nets, "every network should have been taken"
    owner_count = Counter(owned.values())
    assert max(owner_count.values()) == 1, f"a project got two networks: {owner_count}"

    # Every successful instance sits on its own project's network.
    for s in ok:
        assert owned.get(s["network"]) == s["project"], s
    # All or nothing per project: 4 instances on its network, or 4 refusals.
    got = Counter(s["project"] for s in ok)
    refused = Counter(call.project for call, _ in errors)
    for p in projects:
        assert (got[p], refused[p]) in ((4, 0), (0, 4)), (p, got[p], refused[p])
    assert set(got) == set(owned.values())

    wrong = _scalar(
        check_db,
        "SELECT count(*) FROM virtual_interfaces v"
        " JOIN instances i ON i.uuid = v.instance_uuid"
        " JOIN networks n ON n.id = v.network_id"
        " WHERE n.project_id IS NULL OR n.project_id <> i.project_id",
    )
    assert wrong == 0
    _check_fixed_rows(check_db, ok)


def test_locked_but_unowned_vlan_network_is_not_exhaustion(db_url: str, check_db: sa.Engine) -> None:
    """The VLAN twin of the test above: one VLAN network, never kept by anybody.

    Child 0 boots first instances of fresh projects with quota_fixed_ips=0: each unit
    associates the free network with its project, then fails the quota check and rolls
    back. Child 1 boots an instance of a fresh project, deallocates it and disassociates
    the project again, over and over: the network is free whenever child 1 asks, so
    none of its calls may be refused.
    """
    ctx, engine = _setup(db_url, VLAN_OVERRIDES)
    N.create_networks(ctx, VLAN, N.NetworkRequest("vlan", "10.51.0.0/28", num_networks=1, network_size=16))
    engine.dispose()

    doomed = tuple(Call("fixed", f"over-{i}", str(uuidlib.UUID(int=1 << 64 | i))) for i in range(300))
    churn = tuple(Call("vlan-churn", f"fresh-{i}", str(uuidlib.UUID(int=2 << 64 | i))) for i in range(100))
    outcomes = _run(
        db_url,
        [{**VLAN_OVERRIDES, "quota_fixed_ips": 0}, VLAN_OVERRIDES],
        [doomed, churn],
    )

    assert not outcomes[0].ok
    # Refused by quota, or no network while child 1 legitimately holds it.
    assert {code for _, code, _ in outcomes[0].errors} <= {"quota_exceeded", "no_more_networks"}
    spurious = [(call.project, msg) for call, _, msg in outcomes[1].errors]
    assert not spurious, f"{len(spurious)} of {len(churn)} first boots refused: {spurious[0]}"
    assert len(outcomes[1].ok) == len(churn)
    assert _scalar(check_db, "SELECT count(*) FROM networks WHERE project_id IS NOT NULL") == 0
    assert _scalar(check_db, "SELECT count(*) FROM instances") == 0
