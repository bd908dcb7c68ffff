"""FlatManager lifecycle: create, allocate, requested addresses, exhaustion, deallocate, reserve."""

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
    CidrConflict,
    Conflict,
    InvalidInput,
    NoMoreFixedIps,
    NotFound,
    QuotaExceeded,
)
from novanet.domain.models import Network
from novanet.domain.modes import FLAT
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

CIDR = "10.10.0.0/28"


@pytest.fixture
def ctx(env: Env) -> Ctx:
    return env.ctx("flat")


def make_net(ctx: Ctx, cidr: str = CIDR, **kw: Any) -> Network:
    (net,) = N.create_networks(ctx, FLAT, N.NetworkRequest("flat", cidr, **kw))
    return net


def boot(
    ctx: Ctx, project: str = "p1", host: str = "compute-1", **kw: Any
) -> tuple[str, list[dict[str, Any]]]:
    uuid = new_uuid()
    return uuid, I.allocate_for_instance(ctx, FLAT, I.AllocateRequest(uuid, project, host, **kw))


# --- create ------------------------------------------------------------------------------------


def test_create_network_rows(ctx: Ctx) -> None:
    net = make_net(ctx)
    assert net.cidr == CIDR
    assert net.label == "flat"
    assert net.netmask == "255.255.255.240"
    assert net.gateway == "10.10.0.1"
    assert net.broadcast == "10.10.0.15"
    assert net.dhcp_start == "10.10.0.2"
    assert net.bridge == "br100"  # flat_network_bridge
    assert net.vlan is None
    assert net.vpn_private_address is None
    assert net.vpn_public_port is None
    assert net.dns1 == "192.0.2.53"  # flat_network_dns
    assert net.dns2 is None
    assert net.project_id is None
    assert net.host is None
    assert net.multi_host is False
    assert net.manager == "flat"
    assert [n.uuid for n in N.list_networks(ctx)] == [net.uuid]
    rows = fixed_rows(ctx, CIDR)
    assert len(rows) == 16
    assert set(rows) == {f"10.10.0.{i}" for i in range(16)}
    # Flat: network, gateway and broadcast only.
    assert reserved_addresses(ctx, CIDR) == {"10.10.0.0", "10.10.0.1", "10.10.0.15"}
    assert not any(r["allocated"] or r["leased"] or r["instance_uuid"] for r in rows.values())


def test_create_options(env: Env) -> None:
    ctx = env.ctx("flat", flat_injected=True, flat_interface="eth9", multi_host=True)
    net = make_net(ctx)
    assert net.injected is True  # flat_injected: FlatManager writes the guest's interfaces file
    assert net.bridge_interface == "eth9"  # flat_interface
    assert net.multi_host is True  # multi_host option is the default of the flag
    net = make_net(
        env.ctx("flat"),
        "10.10.1.0/28",
        bridge="br-flat",
        bridge_interface="eth1",
        dns1="192.0.2.1",
        dns2="192.0.2.2",
        multi_host=False,
    )
    assert (net.bridge, net.bridge_interface, net.dns1, net.dns2) == (
        "br-flat",
        "eth1",
        "192.0.2.1",
        "192.0.2.2",
    )
    assert net.injected is False
    assert net.multi_host is False


def test_create_several_networks(ctx: Ctx) -> None:
    nets = N.create_networks(
        ctx, FLAT, N.NetworkRequest("flat", "10.10.0.0/26", num_networks=3, network_size=16)
    )
    assert [n.cidr for n in nets] == ["10.10.0.0/28", "10.10.0.16/28", "10.10.0.32/28"]
    assert [n.label for n in nets] == ["flat_0", "flat_1", "flat_2"]
    for n in nets:
        assert len(fixed_rows(ctx, n.cidr)) == 16
    assert reserved_addresses(ctx, "10.10.0.16/28") == {"10.10.0.16", "10.10.0.17", "10.10.0.31"}
    # Without --network-size the range is split evenly.
    nets = N.create_networks(ctx, FLAT, N.NetworkRequest("half", "10.10.1.0/26", num_networks=2))
    assert [n.cidr for n in nets] == ["10.10.1.0/27", "10.10.1.32/27"]
    # A size that is no power of two is rounded up (20 -> 32).
    nets = N.create_networks(
        ctx, FLAT, N.NetworkRequest("odd", "10.10.2.0/26", num_networks=2, network_size=20)
    )
    assert [n.cidr for n in nets] == ["10.10.2.0/27", "10.10.2.32/27"]
    assert len(fixed_rows(ctx, "10.10.2.32/27")) == 32


def test_create_skips_subnet_already_used(ctx: Ctx) -> None:
    make_net(ctx, "10.10.0.16/28")
    nets = N.create_networks(
        ctx, FLAT, N.NetworkRequest("more", "10.10.0.0/26", num_networks=3, network_size=16)
    )
    assert [n.cidr for n in nets] == ["10.10.0.0/28", "10.10.0.32/28", "10.10.0.48/28"]
    assert len(N.list_networks(ctx)) == 4


def test_create_conflicts_change_nothing(env: Env, ctx: Ctx) -> None:
    make_net(ctx, "10.10.0.0/24")
    # The same range, and ranges that an existing network holds.
    for cidr in ("10.10.0.0/24", "10.10.0.128/25", "10.10.0.16/28"):
        refused(env, CidrConflict, N.create_networks, ctx, FLAT, N.NetworkRequest("x", cidr))
    # A range with room for fewer networks than asked next to the existing one.
    refused(
        env,
        CidrConflict,
        N.create_networks,
        ctx,
        FLAT,
        N.NetworkRequest("x", "10.10.0.0/23", num_networks=2, network_size=256),
    )


def test_create_refusals(env: Env, ctx: Ctx) -> None:
    bad = [
        N.NetworkRequest("x", "10.10.0.1/28"),  # host bits
        N.NetworkRequest("x", "fd00::/64"),
        N.NetworkRequest("x", "10.10.0.0/28", network_size=64),  # range too small
        N.NetworkRequest("x", "10.10.0.0/28", num_networks=5, network_size=4),
        N.NetworkRequest("x", "10.10.0.0/28", num_networks=0),
        N.NetworkRequest("x", "10.10.0.0/28", vlan_start=100),  # VLAN only
        N.NetworkRequest("x", "10.10.0.0/28", vpn_start=1000),  # VLAN only
        N.NetworkRequest("x", "10.10.0.0/28", bridge="br 0"),
        N.NetworkRequest("x", "10.10.0.0/28", bridge="bridge-name-too-long"),
        N.NetworkRequest("x", "10.10.0.0/28", bridge_interface="eth0;reboot"),
        N.NetworkRequest("x", "10.10.0.0/28", gateway="10.10.0.15"),  # broadcast
        N.NetworkRequest("x", "10.10.0.0/28", gateway="10.10.1.1"),  # outside
        N.NetworkRequest("x", "10.10.0.0/28", dns1="dns.example"),
        N.NetworkRequest("x", "10.10.0.0/28", fixed_cidr="10.10.1.0/29"),  # not inside
        N.NetworkRequest("x", "10.10.0.0/28", uuid="nope"),
        N.NetworkRequest("x", "10.10.0.0/28", project_id="a b"),
        N.NetworkRequest("bad\x00label", "10.10.0.0/28"),
    ]
    for req in bad:
        refused(env, InvalidInput, N.create_networks, ctx, FLAT, req)
    assert N.list_networks(ctx) == []
    # Without flat_network_bridge a flat network needs --bridge.
    ctx = env.ctx("flat", flat_network_bridge=None)
    refused(env, InvalidInput, N.create_networks, ctx, FLAT, N.NetworkRequest("x", CIDR), match="bridge")
    # And with no network at all there is nothing to allocate from.
    refused(env, NotFound, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(new_uuid(), "p1", "h"))


# --- allocate ----------------------------------------------------------------------------------


def test_allocate_returns_network_info(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    assert net.host is None
    uuid, info = boot(ctx, hostname="web-1")
    assert len(info) == 1
    vif = info[0]
    assert vif["address"].startswith("fa:16:3e:")
    assert vif["network"]["id"] == net.uuid
    assert vif["network"]["bridge"] == "br100"
    assert vif["network"]["dhcp"] is False
    sub = subnet(info)
    assert sub["cidr"] == CIDR
    assert sub["gateway"] == "10.10.0.1"
    assert sub["dns"] == ["192.0.2.53"]
    assert sub["dhcp_server"] is None  # FlatManager runs no DHCP
    assert first_ip(info) == "10.10.0.2"  # first free address
    row = fixed_rows(ctx, CIDR)["10.10.0.2"]
    assert row["instance_uuid"] == uuid
    assert row["allocated"] is True
    assert row["hostname"] == "web-1"
    assert row["host"] == "compute-1"
    assert I.show(ctx, uuid)["network_info"] == info
    # Single-host: the first allocation made the network host the host option...
    assert N.list_networks(ctx)[0].host == "net-host"
    # ... and later allocations under another host option do not move it.
    _, info = boot(env.ctx("flat", host="other"), host="other")
    assert N.list_networks(ctx)[0].host == "net-host"
    assert first_ip(info) == "10.10.0.3"
    assert first_ip(boot(ctx)[1]) == "10.10.0.4"
    # `fixed list --host`: the instances' hosts.
    assert [r["address"] for r in X.list_fixed(ctx, host="other")] == ["10.10.0.3"]
    assert X.list_fixed(ctx, host="nowhere") == []


def test_single_host_network_host_option(env: Env) -> None:
    ctx = env.ctx("flat", network_host="netnode")
    make_net(ctx)
    boot(ctx)
    assert N.list_networks(ctx)[0].host == "netnode"


def test_allocate_on_every_flat_network_or_the_requested_one(ctx: Ctx) -> None:
    a = make_net(ctx, priority=2)
    b = make_net(ctx, "10.10.1.0/28", priority=1)
    _, info = boot(ctx)
    assert [v["network"]["id"] for v in info] == [b.uuid, a.uuid]  # by priority
    assert len({v["address"] for v in info}) == 2  # one MAC per VIF
    assert [first_ip(info, 0), first_ip(info, 1)] == ["10.10.1.2", "10.10.0.2"]
    _, info = boot(ctx, requested=[I.RequestedNetwork(a.uuid)])
    assert [v["network"]["id"] for v in info] == [a.uuid]
    assert first_ip(info) == "10.10.0.3"


def test_requested_address(ctx: Ctx) -> None:
    net = make_net(ctx)
    uuid, info = boot(ctx, requested=[I.RequestedNetwork(net.uuid, "10.10.0.9")])
    assert first_ip(info) == "10.10.0.9"
    assert fixed_rows(ctx, CIDR)["10.10.0.9"]["instance_uuid"] == uuid
    # The next unrequested allocation still starts at the bottom.
    assert first_ip(boot(ctx)[1]) == "10.10.0.2"
    # A network may be named by its CIDR too.
    _, info = boot(ctx, requested=[I.RequestedNetwork(CIDR, "10.10.0.7")])
    assert first_ip(info) == "10.10.0.7"


def test_allocation_refusals(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    taken_uuid, info = boot(ctx)
    assert first_ip(info) == "10.10.0.2"

    def request(address: str | None, network: str = net.uuid, **kw: Any) -> I.AllocateRequest:
        return I.AllocateRequest(new_uuid(), "p1", "compute-1", [I.RequestedNetwork(network, address)], **kw)

    for address, error in [
        ("10.10.0.2", AddressInUse),  # taken by the first instance
        ("10.10.0.0", AddressInUse),  # network (reserved)
        ("10.10.0.1", AddressInUse),  # gateway (reserved)
        ("10.10.0.15", AddressInUse),  # broadcast (reserved)
        ("10.10.1.5", InvalidInput),  # outside the network
        ("not-an-ip", InvalidInput),
    ]:
        refused(env, error, I.allocate_for_instance, ctx, FLAT, request(address))
    refused(env, NotFound, I.allocate_for_instance, ctx, FLAT, request(None, network=new_uuid()))
    refused(env, NotFound, I.allocate_for_instance, ctx, FLAT, request(None, network="10.99.0.0/24"))
    # The VPN instance exists in VLAN mode only.
    refused(env, InvalidInput, I.allocate_for_instance, ctx, FLAT, request(None, vpn=True), match="VLAN")
    refused(
        env,
        InvalidInput,
        I.allocate_for_instance,
        ctx,
        FLAT,
        I.AllocateRequest(new_uuid(), "p1", "h", vpn=True),
    )
    # Same instance twice, same network twice, bad names.
    refused(env, Conflict, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(taken_uuid, "p1", "h"))
    twice = [I.RequestedNetwork(net.uuid), I.RequestedNetwork(net.uuid)]
    refused(
        env, InvalidInput, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(new_uuid(), "p1", "h", twice)
    )
    for req in (
        I.AllocateRequest("not-a-uuid", "p1", "h"),
        I.AllocateRequest(new_uuid(), "p 1", "h"),
        I.AllocateRequest(new_uuid(), "p1", "h;x"),
        I.AllocateRequest(new_uuid(), "p1", "h", hostname="bad_name"),
    ):
        refused(env, InvalidInput, I.allocate_for_instance, ctx, FLAT, req)


def test_exhaustion(env: Env, ctx: Ctx) -> None:
    make_net(ctx, "10.10.0.0/29")  # 8 addresses, 3 reserved
    got = {first_ip(boot(ctx)[1]) for _ in range(5)}
    assert got == {f"10.10.0.{i}" for i in range(2, 7)}
    err = refused(
        env, NoMoreFixedIps, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(new_uuid(), "p1", "h")
    )
    assert "no more fixed IPs in network" in err.message


def test_quota_fixed_ips(env: Env) -> None:
    ctx = env.ctx("flat", quota_fixed_ips=1)
    make_net(ctx)
    boot(ctx, project="p1")
    refused(env, QuotaExceeded, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(new_uuid(), "p1", "h"))
    boot(ctx, project="p2")  # the quota is per project
    # An instance on two flat networks needs two fixed IPs: over a quota of one.
    make_net(ctx, "10.10.1.0/28")
    refused(env, QuotaExceeded, I.allocate_for_instance, ctx, FLAT, I.AllocateRequest(new_uuid(), "p3", "h"))


# --- deallocate --------------------------------------------------------------------------------


def test_deallocate_frees_at_once(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    uuid, info = boot(ctx)
    addr = first_ip(info)
    # Even a reported lease does not hold the address: FlatManager has no DHCP to wait for.
    X.lease(ctx, addr, info[0]["address"])
    out = I.deallocate_for_instance(ctx, uuid)
    assert out == {"uuid": uuid, "freed": [addr], "awaiting_release": []}
    row = fixed_rows(ctx, CIDR)[addr]
    assert row["instance_uuid"] is None
    assert row["allocated"] is False
    assert row["leased"] is False
    dump = env.dump()
    assert dump["virtual_interfaces"] == []
    assert dump["instances"] == []
    assert dump["dhcp_releases"] == []
    with pytest.raises(NotFound):
        I.show(ctx, uuid)
    refused(env, NotFound, I.deallocate_for_instance, ctx, uuid)
    # The address is the first free one again.
    assert first_ip(boot(ctx)[1]) == addr


# --- reserve / unreserve -------------------------------------------------------------------------


def test_reserve_and_unreserve(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    assert X.set_reserved(ctx, "10.10.0.2", True) == {"address": "10.10.0.2", "reserved": True}
    assert X.set_reserved(ctx, "10.10.0.2", True)["reserved"] is True  # idempotent
    assert fixed_rows(ctx, CIDR)["10.10.0.2"]["reserved"] is True
    _, info = boot(ctx)
    assert first_ip(info) == "10.10.0.3"  # skipped
    req = I.AllocateRequest(new_uuid(), "p1", "h", requested=[I.RequestedNetwork(net.uuid, "10.10.0.2")])
    refused(env, AddressInUse, I.allocate_for_instance, ctx, FLAT, req)
    X.set_reserved(ctx, "10.10.0.2", False)
    assert fixed_rows(ctx, CIDR)["10.10.0.2"]["reserved"] is False
    assert first_ip(boot(ctx)[1]) == "10.10.0.2"
    # Refusals: an address in use, an unknown or malformed address.
    refused(env, AddressInUse, X.set_reserved, ctx, "10.10.0.3", True)
    refused(env, NotFound, X.set_reserved, ctx, "10.99.0.1", True)
    refused(env, InvalidInput, X.set_reserved, ctx, "10.10.0", True)


def test_unreserve_structural_refused(env: Env, ctx: Ctx) -> None:
    make_net(ctx, gateway="10.10.0.14")
    # A custom gateway is reserved on top of the positional bottom 2 and top 1.
    assert reserved_addresses(ctx, CIDR) == {"10.10.0.0", "10.10.0.1", "10.10.0.14", "10.10.0.15"}
    for address in ("10.10.0.0", "10.10.0.14", "10.10.0.15"):
        refused(env, InvalidInput, X.set_reserved, ctx, address, False)
    make_net(ctx, "10.10.1.0/28")  # default gateway: index 1
    for address in ("10.10.1.0", "10.10.1.1", "10.10.1.15"):
        refused(env, InvalidInput, X.set_reserved, ctx, address, False)
    # Index 1 is reserved by position only and may be handed out on purpose.
    X.set_reserved(ctx, "10.10.0.1", False)
    assert "10.10.0.1" not in reserved_addresses(ctx, CIDR)
