"""Floating IPs: pools, allocation and quota, release, association and NAT host, auto-assignment."""

from __future__ import annotations

from typing import Any

import pytest
from lifecycle_support import Env, first_ip, new_uuid, refused

from novanet.domain.errors import (
    CidrConflict,
    Conflict,
    Forbidden,
    InvalidInput,
    NoMoreFloatingIps,
    NotFound,
    QuotaExceeded,
)
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

FIXED = "10.30.0.0/28"
POOL = "203.0.113.0/29"  # host addresses .1 - .6


@pytest.fixture
def ctx(env: Env) -> Ctx:
    return env.ctx("flatdhcp")


def make_net(ctx: Ctx, cidr: str = FIXED, **kw: Any) -> Network:
    (net,) = N.create_networks(ctx, FLATDHCP, N.NetworkRequest("private", cidr, **kw))
    return net


def boot(ctx: Ctx, project: str = "p1", host: str = "compute-1") -> tuple[str, list[dict[str, Any]]]:
    uuid = new_uuid()
    return uuid, I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(uuid, project, host))


def floating(ctx: Ctx) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in F.list_floating(ctx)}


def floats_of(info: list[dict[str, Any]]) -> list[str]:
    return [f["address"] for f in info[0]["network"]["subnets"][0]["ips"][0]["floating_ips"]]


# --- pools -----------------------------------------------------------------------------------------


def test_create_pool_from_cidr_and_single_address(ctx: Ctx) -> None:
    assert F.create_pool(ctx, POOL) == 6
    rows = floating(ctx)
    assert list(rows) == [f"203.0.113.{i}" for i in range(1, 7)]  # host addresses only
    for r in rows.values():
        assert (r["pool"], r["interface"]) == ("nova", "eth0")  # default_floating_pool, public_interface
        assert r["project_id"] is None
        assert r["instance_uuid"] is None
        assert r["host"] is None
        assert r["auto_assigned"] is False
    assert F.create_pool(ctx, "198.51.100.9", pool="public", interface="eth1") == 1
    assert floating(ctx)["198.51.100.9"]["pool"] == "public"
    assert floating(ctx)["198.51.100.9"]["interface"] == "eth1"
    assert F.pools(ctx) == ["nova", "public"]
    assert F.create_pool(ctx, "198.51.100.16/31") == 2  # both ends of a /31 are usable


def test_create_pool_refusals(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    F.create_pool(ctx, POOL)
    refused(env, CidrConflict, F.create_pool, ctx, "10.30.0.0/30")  # inside the fixed network
    refused(env, CidrConflict, F.create_pool, ctx, "10.30.0.5")
    refused(env, CidrConflict, F.create_pool, ctx, "10.30.0.0/16")  # holds the fixed network
    refused(env, Conflict, F.create_pool, ctx, "203.0.113.4")  # already in a pool
    refused(env, Conflict, F.create_pool, ctx, "203.0.113.0/28")  # overlaps the pool
    refused(env, InvalidInput, F.create_pool, ctx, "198.51.100.1/24")  # host bits
    refused(env, InvalidInput, F.create_pool, ctx, "2001:db8::/64")
    refused(env, InvalidInput, F.create_pool, ctx, "198.51.100.0/24", pool="my pool")
    refused(env, InvalidInput, F.create_pool, ctx, "198.51.100.0/24", interface="eth0;reboot")
    # The other way round: a fixed network over floating addresses.
    refused(env, CidrConflict, N.create_networks, ctx, FLATDHCP, N.NetworkRequest("x", "203.0.113.0/28"))


def test_delete_pool(env: Env, ctx: Ctx) -> None:
    F.create_pool(ctx, POOL)
    F.allocate(ctx, "p1")
    refused(env, Conflict, F.delete_pool, ctx, POOL)  # an address is held by p1
    refused(env, NotFound, F.delete_pool, ctx, "198.51.100.0/30")
    assert F.delete_pool(ctx, "203.0.113.6") == 1
    F.release(ctx, "203.0.113.1")
    assert F.delete_pool(ctx, POOL) == 5
    assert F.list_floating(ctx) == []


# --- allocate / release ---------------------------------------------------------------------------


def test_allocate_first_free_and_quota(env: Env) -> None:
    ctx = env.ctx("flatdhcp", quota_floating_ips=2)
    F.create_pool(ctx, POOL)
    a = F.allocate(ctx, "p1")
    assert a["address"] == "203.0.113.1"
    assert (a["project_id"], a["pool"], a["auto_assigned"], a["instance_uuid"]) == ("p1", "nova", False, None)
    assert F.allocate(ctx, "p2")["address"] == "203.0.113.2"
    assert F.allocate(ctx, "p1")["address"] == "203.0.113.3"
    err = refused(env, QuotaExceeded, F.allocate, ctx, "p1")
    assert "quota" in err.message
    # Releasing one makes room again, and the released address is first in line.
    F.release(ctx, "203.0.113.1", project_id="p1")
    assert F.allocate(ctx, "p1")["address"] == "203.0.113.1"
    assert [r["address"] for r in F.list_floating(ctx, project_id="p1")] == ["203.0.113.1", "203.0.113.3"]


def test_allocate_pool_refusals(env: Env, ctx: Ctx) -> None:
    F.create_pool(ctx, "198.51.100.9", pool="small")
    refused(env, NotFound, F.allocate, ctx, "p1", pool="absent")
    assert F.allocate(ctx, "p1", pool="small")["address"] == "198.51.100.9"
    refused(env, NoMoreFloatingIps, F.allocate, ctx, "p2", pool="small")
    refused(env, InvalidInput, F.allocate, ctx, "p 2", pool="small")


def test_release_rules(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    F.create_pool(ctx, POOL)
    addr = F.allocate(ctx, "p1")["address"]
    refused(env, Forbidden, F.release, ctx, addr, project_id="p2")  # another project's
    refused(env, Conflict, F.release, ctx, "203.0.113.2")  # not allocated
    refused(env, NotFound, F.release, ctx, "198.51.100.1")
    refused(env, InvalidInput, F.release, ctx, "nope")
    uuid, _ = boot(ctx, "p1")
    F.associate(ctx, addr, uuid, project_id="p1")
    refused(env, Conflict, F.release, ctx, addr, project_id="p1")  # associated
    refused(env, Conflict, F.release, ctx, addr)  # not even the admin
    F.disassociate(ctx, addr, project_id="p1")
    released = F.release(ctx, addr, project_id="p1")  # by the owner
    assert released["address"] == addr
    row = floating(ctx)[addr]
    assert (row["project_id"], row["host"], row["instance_uuid"]) == (None, None, None)
    # The admin (no project) may release any project's address.
    F.allocate(ctx, "p3")
    F.release(ctx, addr)
    assert floating(ctx)[addr]["project_id"] is None


# --- associate / disassociate -------------------------------------------------------------------------


def test_associate_disassociate_single_host(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    F.create_pool(ctx, POOL)
    addr = F.allocate(ctx, "p1")["address"]
    u1, info1 = boot(ctx, "p1", host="compute-1")
    u2, info2 = boot(ctx, "p1", host="compute-2")
    out = F.associate(ctx, addr, u1, project_id="p1")
    assert (out["instance_uuid"], out["fixed_address"]) == (u1, first_ip(info1))
    # Single-host network: the network host does the NAT.
    assert out["host"] == "net-host"
    assert floats_of(I.show(ctx, u1)["network_info"]) == [addr]
    assert [r["address"] for r in F.list_floating(ctx, host="net-host")] == [addr]
    # Associating elsewhere moves it.
    out = F.associate(ctx, addr, u2, fixed_address=first_ip(info2), project_id="p1")
    assert (out["instance_uuid"], out["fixed_address"], out["host"]) == (u2, first_ip(info2), "net-host")
    assert floats_of(I.show(ctx, u1)["network_info"]) == []
    assert floats_of(I.show(ctx, u2)["network_info"]) == [addr]
    # Disassociate: the address stays the project's.
    out = F.disassociate(ctx, addr, project_id="p1")
    assert out["instance_uuid"] == u2  # what it was
    row = floating(ctx)[addr]
    assert (row["instance_uuid"], row["fixed_address"], row["host"], row["project_id"]) == (
        None,
        None,
        None,
        "p1",
    )
    assert floats_of(I.show(ctx, u2)["network_info"]) == []
    refused(env, Conflict, F.disassociate, ctx, addr)  # not associated
    # Deallocating an instance disassociates its floating IP; the project keeps it.
    F.associate(ctx, addr, u1)
    I.deallocate_for_instance(ctx, u1)
    row = floating(ctx)[addr]
    assert (row["project_id"], row["instance_uuid"], row["host"]) == ("p1", None, None)


def test_associate_refusals(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    F.create_pool(ctx, POOL)
    addr = F.allocate(ctx, "p1")["address"]
    mine, _ = boot(ctx, "p1")
    theirs, _ = boot(ctx, "p2")
    refused(env, Forbidden, F.associate, ctx, addr, mine, project_id="p2")  # not p2's address
    refused(env, Forbidden, F.associate, ctx, addr, theirs)  # instance of another project
    refused(env, Forbidden, F.associate, ctx, addr, theirs, project_id="p1")
    refused(env, Conflict, F.associate, ctx, "203.0.113.2", mine)  # not allocated
    refused(env, NotFound, F.associate, ctx, addr, new_uuid())
    refused(env, NotFound, F.associate, ctx, "198.51.100.1", mine)
    refused(env, InvalidInput, F.associate, ctx, addr, mine, fixed_address="10.30.0.9")  # not its address
    refused(env, InvalidInput, F.associate, ctx, addr, "not-a-uuid")
    F.associate(ctx, addr, mine)
    refused(env, Forbidden, F.disassociate, ctx, addr, project_id="p2")


def test_nat_host_is_instance_host_when_multi_host(ctx: Ctx) -> None:
    make_net(ctx, multi_host=True)
    F.create_pool(ctx, POOL)
    addr = F.allocate(ctx, "p1")["address"]
    u1, _ = boot(ctx, "p1", host="compute-a")
    u2, _ = boot(ctx, "p1", host="compute-b")
    assert F.associate(ctx, addr, u1)["host"] == "compute-a"
    assert F.associate(ctx, addr, u2)["host"] == "compute-b"
    assert [r["address"] for r in F.list_floating(ctx, host="compute-b")] == [addr]
    assert F.list_floating(ctx, host="compute-a") == []


# --- auto-assigned -------------------------------------------------------------------------------------


def test_auto_assign_floating_ip(env: Env) -> None:
    ctx = env.ctx("flatdhcp", auto_assign_floating_ip=True, quota_floating_ips=0)
    make_net(ctx)
    F.create_pool(ctx, POOL)
    uuid, info = boot(ctx, "p1", host="compute-1")
    assert floats_of(info) == ["203.0.113.1"]
    assert I.show(ctx, uuid)["network_info"] == info
    row = floating(ctx)["203.0.113.1"]
    assert row["auto_assigned"] is True
    assert (row["project_id"], row["instance_uuid"], row["fixed_address"]) == ("p1", uuid, first_ip(info))
    assert row["host"] == "net-host"
    # Not charged to the quota (0 here), and not the user's to release or disassociate.
    refused(env, Forbidden, F.release, ctx, "203.0.113.1", project_id="p1")
    refused(env, Forbidden, F.release, ctx, "203.0.113.1")
    refused(env, Forbidden, F.disassociate, ctx, "203.0.113.1", project_id="p1")
    # It goes back to the pool with its instance.
    I.deallocate_for_instance(ctx, uuid)
    row = floating(ctx)["203.0.113.1"]
    assert (row["project_id"], row["instance_uuid"], row["host"], row["auto_assigned"]) == (
        None,
        None,
        None,
        False,
    )
    # An empty pool makes the whole allocation fail, changing nothing.
    F.delete_pool(ctx, POOL)
    refused(env, NotFound, I.allocate_for_instance, ctx, FLATDHCP, I.AllocateRequest(new_uuid(), "p1", "h"))
