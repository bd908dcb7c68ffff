"""Batches: many instances allocated / deallocated in one transaction, and the API
process's group commit (api/coalesce.py) that builds such batches from concurrent requests.

On SQLite and PostgreSQL (``env`` fixture). The concurrency proof of batches (processes x
batches) is in test_concurrency.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from lifecycle_support import Env

from novanet.api.coalesce import Coalescer
from novanet.api.native.instances import Allocated, allocate_batch
from novanet.domain.errors import AddressInUse, Conflict, InvalidInput, NotFound, QuotaExceeded
from novanet.domain.modes import FLATDHCP
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx


def _net(ctx: Ctx, cidr: str = "10.30.0.0/24", **kw: Any) -> N.Network:
    req = N.NetworkRequest(label="private", fixed_range_v4=cidr, bridge="br100", **kw)
    return N.create_networks(ctx, FLATDHCP, req)[0]


def _req(project: str = "p1", host: str = "compute-1", **kw: Any) -> I.AllocateRequest:
    return I.AllocateRequest(str(uuid.uuid4()), project, host, **kw)


def _address(info: list[dict[str, Any]]) -> str:
    return str(info[0]["network"]["subnets"][0]["ips"][0]["address"])


def _held(env: Env) -> dict[str, str]:
    with env.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT instance_uuid, address FROM fixed_ips WHERE allocated = :t"), {"t": True}
        )
        return {r.instance_uuid: r.address for r in rows}


def test_batch_allocates_each_member_once_and_deallocates(env: Env) -> None:
    ctx = env.ctx("flatdhcp")
    _net(ctx)
    reqs = [_req(host=f"compute-{i % 2}") for i in range(20)]
    infos = I.allocate_many(ctx, FLATDHCP, reqs)
    addresses = [_address(i) for i in infos]
    assert len(set(addresses)) == 20
    assert len({i[0]["address"] for i in infos}) == 20  # MACs
    assert _held(env) == {r.instance_uuid: a for r, a in zip(reqs, addresses, strict=True)}
    # each member's answer is what `instance show` reads back
    for r, info in zip(reqs, infos, strict=True):
        assert I.show(ctx, r.instance_uuid)["network_info"] == info
    done = I.deallocate_many(ctx, [r.instance_uuid for r in reqs])
    assert [d["uuid"] for d in done] == [r.instance_uuid for r in reqs]
    assert [d["freed"] for d in done] == [[a] for a in addresses]
    assert _held(env) == {}


def test_batch_change_log_names_each_host_and_the_network_for_new_hosts(env: Env) -> None:
    """Two instances of a host new to the network, in one batch: the network's peers must
    hear of the host (network scope), although each member sees the other on it."""
    ctx = env.ctx("flatdhcp")
    net = _net(ctx, multi_host=True)
    reqs = [_req(host="compute-9"), _req(host="compute-9")]
    I.allocate_many(ctx, FLATDHCP, reqs)
    with env.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT ref, host, network_id FROM changes WHERE kind = 'instance'")
        ).all()
    for r in reqs:
        assert (r.instance_uuid, "compute-9", None) in rows
        assert (r.instance_uuid, None, net.id) in rows
    # a later instance on the same host does not concern the network's peers
    later = _req(host="compute-9")
    I.allocate_many(ctx, FLATDHCP, [later])
    with env.engine.connect() as conn:
        mine = conn.execute(
            sa.text("SELECT host, network_id FROM changes WHERE ref = :r"), {"r": later.instance_uuid}
        )
        assert mine.all() == [("compute-9", None)]


def test_a_refused_member_refuses_the_batch_and_changes_nothing(env: Env) -> None:
    ctx = env.ctx("flatdhcp")
    net = _net(ctx)
    first = _req()
    taken = _address(I.allocate_for_instance(ctx, FLATDHCP, first))
    before = env.dump()
    bad = _req(requested=[I.RequestedNetwork(net.uuid, taken)])
    with pytest.raises(AddressInUse, match=f"address {taken} is already in use"):
        I.allocate_many(ctx, FLATDHCP, [_req(), bad, _req()])
    assert env.dump() == before
    with pytest.raises(Conflict, match="already has networks"):
        I.allocate_many(ctx, FLATDHCP, [_req(), first])
    with pytest.raises(InvalidInput, match="appears twice"):
        dup = _req()
        I.allocate_many(ctx, FLATDHCP, [dup, dup])
    with pytest.raises(InvalidInput, match="invalid instance uuid 'nope'"):
        I.allocate_many(ctx, FLATDHCP, [_req(), I.AllocateRequest("nope", "p1", "compute-1")])
    with pytest.raises(NotFound, match="not found"):
        I.deallocate_many(ctx, [first.instance_uuid, str(uuid.uuid4())])
    assert env.dump() == before


def test_quota_counts_the_whole_batch(env: Env) -> None:
    ctx = env.ctx("flatdhcp", quota_fixed_ips=5)
    _net(ctx)
    I.allocate_many(ctx, FLATDHCP, [_req(), _req(), _req()])
    before = env.dump()
    with pytest.raises(QuotaExceeded, match="holds 3 of 5 and asks for 3 more"):
        I.allocate_many(ctx, FLATDHCP, [_req(), _req(), _req()])
    assert env.dump() == before
    # another project's batch is counted against its own quota only
    I.allocate_many(ctx, FLATDHCP, [_req("p2") for _ in range(5)])
    I.allocate_many(ctx, FLATDHCP, [_req(), _req()])
    assert len(_held(env)) == 10


def _gated(ctx: Ctx) -> tuple[Coalescer[I.AllocateRequest, Allocated], threading.Event, threading.Event]:
    """A coalescer whose first batch waits until released: whatever is submitted meanwhile
    queues up and becomes the next batch (as requests do while a transaction is in flight)."""
    started, release = threading.Event(), threading.Event()
    first = [True]

    def run_batch(reqs: Sequence[I.AllocateRequest]) -> list[Allocated]:
        if first[0]:
            first[0] = False
            started.set()
            assert release.wait(30)
        return allocate_batch(ctx, reqs)

    return Coalescer("allocate", run_batch, max_batch=64), started, release


def test_group_commit_gives_each_request_its_own_result(env: Env) -> None:
    ctx = env.ctx("flatdhcp")
    _net(ctx)
    co, started, release = _gated(ctx)
    try:
        head = co.submit(_req())
        assert started.wait(30)
        reqs = [_req(host=f"compute-{i % 3}") for i in range(10)]
        futs = [co.submit(r) for r in reqs]
        release.set()
        infos = [f.result(30).info for f in futs]
        head.result(30)
    finally:
        co.close()
    assert (co.batches, co.items) == (2, 11)  # the ten queued requests: one transaction
    held = _held(env)
    assert [held[r.instance_uuid] for r in reqs] == [_address(i) for i in infos]
    assert len(set(held.values())) == 11


def test_group_commit_one_bad_request_does_not_fail_the_others(env: Env) -> None:
    """A batch refused because of one member is run again member by member: the bad
    request gets its own error, every other its allocation."""
    ctx = env.ctx("flatdhcp", quota_fixed_ips=8)
    net = _net(ctx)
    taken = _address(I.allocate_for_instance(ctx, FLATDHCP, _req("p9")))
    co, started, release = _gated(ctx)
    try:
        head = co.submit(_req("p9"))
        assert started.wait(30)
        good = [_req() for _ in range(6)]
        bad_address = _req(requested=[I.RequestedNetwork(net.uuid, taken)])
        over_quota = [_req("p9") for _ in range(7)]  # p9 holds 2 of 8 by then
        futs = [co.submit(r) for r in [good[0], bad_address, *good[1:3], *over_quota, *good[3:]]]
        release.set()
        head.result(30)
        outcomes: list[Any] = []
        for f in futs:
            try:
                outcomes.append(f.result(30))
            except Exception as exc:  # each future holds its own error
                outcomes.append(exc)
    finally:
        co.close()
    assert isinstance(outcomes[1], AddressInUse)
    quota = outcomes[4:11]
    assert sum(isinstance(o, QuotaExceeded) for o in quota) == 1  # the 7th of p9's: 2 + 6 = 8
    good_out = [outcomes[0], *outcomes[2:4], *outcomes[11:]]
    assert all(isinstance(o, Allocated) for o in good_out)
    held = _held(env)
    assert all(r.instance_uuid in held for r in good)
    assert bad_address.instance_uuid not in held
    assert sum(r.instance_uuid in held for r in over_quota) == 6
