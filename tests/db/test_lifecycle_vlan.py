"""VlanManager lifecycle: VLAN/bridge/VPN assignment, project association, VPN address, release."""

from __future__ import annotations

from typing import Any

import pytest
from lifecycle_support import (
    Env,
    first_ip,
    fixed_rows,
    new_uuid,
    refused,
    reserved_addresses,
    subnet,
)

from novanet.domain.errors import (
    AddressInUse,
    Conflict,
    Forbidden,
    InvalidInput,
    NoMoreFixedIps,
    NoMoreNetworks,
    VlanConflict,
)
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP, VLAN
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx


@pytest.fixture
def ctx(env: Env) -> Ctx:
    return env.ctx("vlan", vlan_interface="eth1")


def create(ctx: Ctx, cidr: str, num: int = 1, size: int = 16, **kw: Any) -> list[Network]:
    req = N.NetworkRequest("vlan", cidr, num_networks=num, network_size=size, **kw)
    return N.create_networks(ctx, VLAN, req)


def boot(ctx: Ctx, project: str, host: str = "compute-1", **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    uuid = new_uuid()
    return uuid, I.allocate_for_instance(ctx, VLAN, I.AllocateRequest(uuid, project, host, **kw))


def by_cidr(ctx: Ctx) -> dict[str, Network]:
    return {n.cidr: n for n in N.list_networks(ctx)}


# --- create ----------------------------------------------------------------------------------


def test_create_network_rows(ctx: Ctx) -> None:
    nets = create(ctx, "10.20.0.0/27", num=2)
    assert [n.cidr for n in nets] == ["10.20.0.0/28", "10.20.0.16/28"]
    assert [n.label for n in nets] == ["vlan_0", "vlan_1"]
    assert [n.vlan for n in nets] == [100, 101]  # vlan_start
    assert [n.bridge for n in nets] == ["br100", "br101"]
    assert [n.bridge_interface for n in nets] == ["eth1", "eth1"]  # vlan_interface
    assert [n.vpn_public_port for n in nets] == [1000, 1001]  # vpn_start
    assert [n.vpn_public_address for n in nets] == ["192.0.2.10", "192.0.2.10"]  # vpn_ip = $my_ip
    assert [n.vpn_private_address for n in nets] == ["10.20.0.2", "10.20.0.18"]
    assert [n.gateway for n in nets] == ["10.20.0.1", "10.20.0.17"]
    assert [n.dhcp_start for n in nets] == ["10.20.0.3", "10.20.0.19"]
    assert [n.project_id for n in nets] == [None, None]  # not owned at creation
    assert all(n.manager == "vlan" for n in nets)
    for n in nets:
        assert len(fixed_rows(ctx, n.cidr)) == 16
    # VLAN: network, gateway, VPN (bottom 3) and broadcast.
    assert reserved_addresses(ctx, "10.20.0.0/28") == {"10.20.0.0", "10.20.0.1", "10.20.0.2", "10.20.0.15"}
    assert reserved_addresses(ctx, "10.20.0.16/28") == {
        "10.20.0.16",
        "10.20.0.17",
        "10.20.0.18",
        "10.20.0.31",
    }


def test_create_keeps_vpn_client_addresses(env: Env) -> None:
    ctx = env.ctx("vlan", cnt_vpn_clients=3, vpn_ip="198.51.100.7", vlan_start=200, vpn_start=5000)
    (net,) = create(ctx, "10.20.0.0/28")
    assert (net.vlan, net.bridge, net.vpn_public_port, net.vpn_public_address) == (
        200,
        "br200",
        5000,
        "198.51.100.7",
    )
    top = {f"10.20.0.{i}" for i in (12, 13, 14, 15)}
    assert reserved_addresses(ctx, "10.20.0.0/28") == {"10.20.0.0", "10.20.0.1", "10.20.0.2"} | top


def test_second_create_continues_after_highest_vlan(ctx: Ctx) -> None:
    create(ctx, "10.20.0.0/27", num=2)
    (third,) = create(ctx, "10.21.0.0/28")
    assert (third.vlan, third.bridge, third.vpn_public_port) == (102, "br102", 1002)
    # An explicit --vlan / --vpn is honoured; later creates continue after the highest.
    (explicit,) = create(ctx, "10.22.0.0/28", vlan_start=300, vpn_start=2000)
    assert (explicit.vlan, explicit.bridge, explicit.vpn_public_port) == (300, "br300", 2000)
    (after,) = create(ctx, "10.23.0.0/28")
    assert (after.vlan, after.vpn_public_port) == (301, 2001)
    # An explicit --vlan below the highest is fine while free.
    (low,) = create(ctx, "10.24.0.0/28", vlan_start=150)
    assert low.vlan == 150
    assert sorted(n.vlan for n in N.list_networks(ctx) if n.vlan is not None) == [
        100,
        101,
        102,
        150,
        300,
        301,
    ]


def test_vlan_collisions_and_range_refused(env: Env, ctx: Ctx) -> None:
    create(ctx, "10.20.0.0/27", num=2)
    refused(env, VlanConflict, create, ctx, "10.21.0.0/28", vlan_start=101)
    refused(env, VlanConflict, create, ctx, "10.21.0.0/27", num=2, vlan_start=99)  # 99 free, 100 not
    refused(env, Conflict, create, ctx, "10.21.0.0/28", vlan_start=500, vpn_start=1001)  # VPN port used
    for start in (4095, 0, -1, 5000):
        refused(env, InvalidInput, create, ctx, "10.21.0.0/28", vlan_start=start)
    refused(env, InvalidInput, create, ctx, "10.21.0.0/27", num=2, vlan_start=4094)  # 4094, 4095
    refused(env, InvalidInput, create, ctx, "10.21.0.0/28", vpn_start=70000)
    refused(env, InvalidInput, create, ctx, "10.21.0.0/27", num=2, bridge="br-one")
    # VLAN: bottom 3 + top 1 leave nothing in a /30.
    refused(env, InvalidInput, create, ctx, "10.21.0.0/30", size=4)
    # 4094 itself is a valid 802.1Q id; after it there is no id left to continue with.
    (top,) = create(ctx, "10.21.0.0/28", vlan_start=4094)
    assert top.vlan == 4094
    refused(env, InvalidInput, create, ctx, "10.22.0.0/28")


def test_vlan_start_option_near_the_top(env: Env) -> None:
    ctx = env.ctx("vlan", vlan_start=4093)
    refused(env, InvalidInput, create, ctx, "10.20.0.0/26", num=3)
    assert [n.vlan for n in create(ctx, "10.20.0.0/27", num=2)] == [4093, 4094]


# --- project association -------------------------------------------------------------------------


def test_projects_take_their_own_network_on_first_allocation(env: Env, ctx: Ctx) -> None:
    n0, n1 = create(ctx, "10.20.0.0/27", num=2)
    _, info = boot(ctx, "proj-a")
    assert info[0]["network"]["id"] == n0.uuid
    assert by_cidr(ctx)[n0.cidr].project_id == "proj-a"
    _, info_b = boot(ctx, "proj-b")
    assert info_b[0]["network"]["id"] == n1.uuid
    assert by_cidr(ctx)[n1.cidr].project_id == "proj-b"
    # The project's later instances stay on its network.
    _, info = boot(ctx, "proj-a")
    assert info[0]["network"]["id"] == n0.uuid
    assert first_ip(info) == "10.20.0.4"
    # A third project finds none left.
    err = refused(
        env, NoMoreNetworks, I.allocate_for_instance, ctx, VLAN, I.AllocateRequest(new_uuid(), "proj-c", "h")
    )
    assert "proj-c" in err.message
    # Requesting a network of another project, or one not associated with it, is forbidden.
    req = I.AllocateRequest(new_uuid(), "proj-a", "h", [I.RequestedNetwork(n1.uuid)])
    refused(env, Forbidden, I.allocate_for_instance, ctx, VLAN, req)
    (spare,) = create(ctx, "10.21.0.0/28")
    req = I.AllocateRequest(new_uuid(), "proj-a", "h", [I.RequestedNetwork(spare.uuid)])
    refused(env, Forbidden, I.allocate_for_instance, ctx, VLAN, req)
    # A network of another manager cannot be requested in VLAN mode.
    (flat,) = N.create_networks(env.ctx("flatdhcp"), FLATDHCP, N.NetworkRequest("f", "10.30.0.0/28"))
    req = I.AllocateRequest(new_uuid(), "proj-a", "h", [I.RequestedNetwork(flat.uuid)])
    refused(env, InvalidInput, I.allocate_for_instance, ctx, VLAN, req)


def test_allocate_network_info(ctx: Ctx) -> None:
    (net,) = create(ctx, "10.20.0.0/28", dns2="192.0.2.54")
    uuid, info = boot(ctx, "proj-a")
    n = info[0]["network"]
    assert (n["id"], n["bridge"], n["vlan"], n["bridge_interface"]) == (net.uuid, "br100", 100, "eth1")
    assert n["tenant_id"] == "proj-a"
    assert n["should_create_vlan"] is True
    assert n["dhcp"] is True
    sub = subnet(info)
    assert (sub["gateway"], sub["dhcp_server"]) == ("10.20.0.1", "10.20.0.1")
    assert sub["dns"] == ["192.0.2.53", "192.0.2.54"]
    assert first_ip(info) == "10.20.0.3"  # dhcp_start: index 2 is the VPN's
    assert by_cidr(ctx)[net.cidr].host == "net-host"
    assert I.show(ctx, uuid)["network_info"] == info


def test_vpn_instance_takes_vpn_private_address(env: Env, ctx: Ctx) -> None:
    (net,) = create(ctx, "10.20.0.0/28")
    uuid, info = boot(ctx, "proj-a", vpn=True)
    assert first_ip(info) == "10.20.0.2"
    row = fixed_rows(ctx, net.cidr)["10.20.0.2"]
    assert (row["instance_uuid"], row["allocated"], row["reserved"]) == (uuid, True, True)
    # Ordinary instances still start at dhcp_start.
    assert first_ip(boot(ctx, "proj-a")[1]) == "10.20.0.3"
    # One VPN per network; a VPN instance takes no other address.
    refused(
        env,
        AddressInUse,
        I.allocate_for_instance,
        ctx,
        VLAN,
        I.AllocateRequest(new_uuid(), "proj-a", "h", vpn=True),
    )
    req = I.AllocateRequest(new_uuid(), "proj-a", "h", [I.RequestedNetwork(net.uuid, "10.20.0.9")], vpn=True)
    refused(env, InvalidInput, I.allocate_for_instance, ctx, VLAN, req)
    # The VPN address is reserved for anyone else.
    I.deallocate_for_instance(ctx, uuid)
    req = I.AllocateRequest(new_uuid(), "proj-a", "h", [I.RequestedNetwork(net.uuid, "10.20.0.2")])
    refused(env, AddressInUse, I.allocate_for_instance, ctx, VLAN, req)
    # ... and free again for the next VPN instance.
    assert first_ip(boot(ctx, "proj-a", vpn=True)[1]) == "10.20.0.2"


def test_vpn_client_addresses_are_never_handed_out(env: Env) -> None:
    ctx = env.ctx("vlan", cnt_vpn_clients=2)
    create(ctx, "10.20.0.0/29", size=8)  # .3 and .4 usable: .5 .6 for VPN clients, .7 broadcast
    got = [first_ip(boot(ctx, "proj-a")[1]) for _ in range(2)]
    assert got == ["10.20.0.3", "10.20.0.4"]
    err = refused(
        env, NoMoreFixedIps, I.allocate_for_instance, ctx, VLAN, I.AllocateRequest(new_uuid(), "proj-a", "h")
    )
    assert "no more fixed IPs in network" in err.message


def test_deallocate_and_release(env: Env, ctx: Ctx) -> None:
    (net,) = create(ctx, "10.20.0.0/28")
    uuid, info = boot(ctx, "proj-a")
    addr, mac = first_ip(info), info[0]["address"]
    X.lease(ctx, addr, mac)
    assert I.deallocate_for_instance(ctx, uuid)["awaiting_release"] == [addr]
    assert [(r["address"], r["mac"]) for r in env.dhcp_releases()] == [(addr, mac)]
    assert X.release(ctx, addr, mac).action == "freed"
    assert fixed_rows(ctx, net.cidr)[addr]["instance_uuid"] is None
    # The network stays the project's after its instances are gone.
    assert by_cidr(ctx)[net.cidr].project_id == "proj-a"
    # Until the operator disassociates it; then the next project takes it.
    N.modify_network(ctx, net.cidr, disassociate_project=True)
    assert by_cidr(ctx)[net.cidr].project_id is None
    _, info = boot(ctx, "proj-b")
    assert info[0]["network"]["tenant_id"] == "proj-b"


def test_vlan_multi_host_gateway_per_host(env: Env, ctx: Ctx) -> None:
    (net,) = create(ctx, "10.20.0.0/28", multi_host=True)
    _, info = boot(ctx, "proj-a", host="compute-a")
    # Host and instance addresses come from above the VPN address.
    (host_a,) = env.host_addresses()
    assert {host_a, first_ip(info)} == {"10.20.0.3", "10.20.0.4"}
    assert (subnet(info)["gateway"], subnet(info)["dhcp_server"]) == (host_a, host_a)
    _, info = boot(ctx, "proj-a", host="compute-b")
    (host_b,) = set(env.host_addresses()) - {host_a}
    assert {host_b, first_ip(info)} == {"10.20.0.5", "10.20.0.6"}
    assert subnet(info)["gateway"] == host_b
    assert env.host_addresses() == {host_a: "compute-a", host_b: "compute-b"}
    assert by_cidr(ctx)[net.cidr].host is None
