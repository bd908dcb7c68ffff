"""Network administration: show, delete, modify (project and host), create options."""

from __future__ import annotations

from typing import Any

import pytest
from lifecycle_support import Env, fixed_rows, new_uuid, refused, reserved_addresses

from novanet.domain.errors import Conflict, InvalidInput, NetworkInUse, NotFound
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP, VLAN
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

CIDR = "10.40.0.0/28"


@pytest.fixture
def ctx(env: Env) -> Ctx:
    return env.ctx("flatdhcp")


def make_net(ctx: Ctx, cidr: str = CIDR, **kw: Any) -> Network:
    (net,) = N.create_networks(ctx, FLATDHCP, N.NetworkRequest("net", cidr, **kw))
    return net


def boot(ctx: Ctx, project: str = "p1", **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    uuid = new_uuid()
    return uuid, I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(uuid, project, "compute-1", **kw))


def test_get_network_by_uuid_or_cidr(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    assert N.get_network(ctx, net.uuid) == net
    assert N.get_network(ctx, CIDR) == net
    assert N.get_network(ctx, net.uuid.upper()) == net
    refused(env, NotFound, N.get_network, ctx, new_uuid())
    refused(env, NotFound, N.get_network, ctx, "10.41.0.0/28")
    refused(env, InvalidInput, N.get_network, ctx, "nope")
    pub = net.public()
    assert (pub["cidr"], pub["gateway"], pub["dhcp_start"], pub["uuid"]) == (
        CIDR,
        "10.40.0.1",
        "10.40.0.2",
        net.uuid,
    )


def test_create_with_explicit_uuid_priority_and_progress(env: Env, ctx: Ctx) -> None:
    wanted = new_uuid()
    seen: list[tuple[int, int]] = []
    (net,) = N.create_networks(
        ctx,
        FLATDHCP,
        N.NetworkRequest("net", CIDR, uuid=wanted, priority=3),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert net.uuid == wanted
    assert net.priority == 3
    assert seen and seen[-1] == (16, 16)
    refused(
        env, Conflict, N.create_networks, ctx, FLATDHCP, N.NetworkRequest("dup", "10.41.0.0/28", uuid=wanted)
    )
    # --gateway and --uuid name one network.
    refused(
        env,
        InvalidInput,
        N.create_networks,
        ctx,
        FLATDHCP,
        N.NetworkRequest("two", "10.42.0.0/27", num_networks=2, uuid=new_uuid()),
    )
    refused(
        env,
        InvalidInput,
        N.create_networks,
        ctx,
        FLATDHCP,
        N.NetworkRequest("two", "10.42.0.0/27", num_networks=2, gateway="10.42.0.1"),
    )


def test_create_with_fixed_cidr_reserves_everything_outside_it(ctx: Ctx) -> None:
    make_net(ctx, "10.40.0.0/27", fixed_cidr="10.40.0.16/28")
    reserved = reserved_addresses(ctx, "10.40.0.0/27")
    outside = {f"10.40.0.{i}" for i in range(16)}
    assert outside <= reserved
    assert "10.40.0.31" in reserved  # broadcast
    assert not reserved & {f"10.40.0.{i}" for i in range(17, 31)}
    _, info = boot(ctx)
    assert info[0]["network"]["subnets"][0]["ips"][0]["address"] in {f"10.40.0.{i}" for i in range(16, 31)}
    assert len(fixed_rows(ctx, "10.40.0.0/27")) == 32


# --- delete ----------------------------------------------------------------------------------------


def test_delete_network(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    other = make_net(ctx, "10.41.0.0/28")
    assert N.delete_network(ctx, fixed_range=CIDR).uuid == net.uuid
    assert [n.uuid for n in N.list_networks(ctx)] == [other.uuid]
    assert fixed_rows(ctx, CIDR) == {}
    assert len(fixed_rows(ctx, "10.41.0.0/28")) == 16
    assert N.delete_network(ctx, uuid=other.uuid).uuid == other.uuid
    dump = env.dump()
    assert dump["networks"] == []
    assert dump["fixed_ips"] == []
    # The range can be used again.
    make_net(ctx)
    refused(env, NotFound, N.delete_network, ctx, fixed_range="10.41.0.0/28")
    refused(env, NotFound, N.delete_network, ctx, uuid=new_uuid())
    refused(env, InvalidInput, N.delete_network, ctx)
    refused(env, InvalidInput, N.delete_network, ctx, fixed_range=CIDR, uuid=new_uuid())


def test_delete_refused_while_associated_with_a_project(env: Env, ctx: Ctx) -> None:
    make_net(ctx, project_id="p1")
    refused(env, NetworkInUse, N.delete_network, ctx, fixed_range=CIDR, match="p1")
    N.modify_network(ctx, CIDR, disassociate_project=True)
    N.delete_network(ctx, fixed_range=CIDR)
    assert N.list_networks(ctx) == []


def test_delete_refused_with_allocated_addresses(env: Env, ctx: Ctx) -> None:
    make_net(ctx, multi_host=True)
    uuid, info = boot(ctx)
    host_addresses = env.host_addresses()
    assert list(host_addresses.values()) == ["compute-1"]
    refused(env, NetworkInUse, N.delete_network, ctx, fixed_range=CIDR)
    # Deallocated but still awaiting its lease release: still in use.
    addr, mac = info[0]["network"]["subnets"][0]["ips"][0]["address"], info[0]["address"]
    X.lease(ctx, addr, mac)
    I.deallocate_for_instance(ctx, uuid)
    refused(env, NetworkInUse, N.delete_network, ctx, fixed_range=CIDR)
    X.release(ctx, addr, mac)
    # The host's gateway address does not hold the network; it goes with it.
    assert env.host_addresses() == host_addresses
    N.delete_network(ctx, fixed_range=CIDR)
    dump = env.dump()
    assert (dump["networks"], dump["fixed_ips"], dump["dhcp_releases"]) == ([], [], [])


# --- modify ----------------------------------------------------------------------------------------


def test_modify_project_and_host(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    assert N.modify_network(ctx, CIDR, project="p1").project_id == "p1"
    assert N.modify_network(ctx, net.uuid, project="p1").project_id == "p1"  # same again: fine
    refused(env, Conflict, N.modify_network, ctx, CIDR, project="p2")
    assert N.modify_network(ctx, CIDR, host="netnode-2").host == "netnode-2"
    after = N.modify_network(ctx, CIDR, disassociate_project=True, disassociate_host=True)
    assert (after.project_id, after.host) == (None, None)
    assert N.get_network(ctx, CIDR).project_id is None
    # Disassociating what is not associated is fine (idempotent).
    N.modify_network(ctx, CIDR, disassociate_project=True)
    for kw in (
        {},
        {"project": "p1", "disassociate_project": True},
        {"host": "h", "disassociate_host": True},
        {"project": "a b"},
        {"host": "h;x"},
    ):
        refused(env, InvalidInput, N.modify_network, ctx, CIDR, **kw)
    refused(env, NotFound, N.modify_network, ctx, "10.49.0.0/28", project="p1")
    # A host set by the operator is kept by the first allocation.
    N.modify_network(ctx, CIDR, host="netnode-2")
    boot(ctx)
    assert N.get_network(ctx, CIDR).host == "netnode-2"


def test_disassociate_project_refused_while_its_instances_use_it(env: Env) -> None:
    ctx = env.ctx("vlan")
    (net,) = N.create_networks(ctx, VLAN, N.NetworkRequest("v", CIDR))
    uuid = new_uuid()
    I.allocate_for_instance(ctx, VLAN, I.AllocateRequest(uuid, "p1", "compute-1"))
    assert N.get_network(ctx, CIDR).project_id == "p1"
    refused(env, NetworkInUse, N.modify_network, ctx, CIDR, disassociate_project=True)
    refused(env, NetworkInUse, N.delete_network, ctx, uuid=net.uuid)
    I.deallocate_for_instance(ctx, uuid)
    N.modify_network(ctx, CIDR, disassociate_project=True)
    N.delete_network(ctx, uuid=net.uuid)
    assert N.list_networks(ctx) == []


def test_project_network_in_flat_mode(env: Env, ctx: Ctx) -> None:
    # A flat network created for a project serves only that project.
    mine = make_net(ctx, project_id="p1")
    shared = make_net(ctx, "10.41.0.0/28")
    _, info = boot(ctx, "p1")
    assert [v["network"]["id"] for v in info] == [mine.uuid, shared.uuid]
    _, info = boot(ctx, "p2")
    assert [v["network"]["id"] for v in info] == [shared.uuid]
