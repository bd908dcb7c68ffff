"""FlatDHCPManager lifecycle: DHCP server address, lease events, release and cleanup, multi-host."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
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

from novanet.domain.errors import AddressInUse, InvalidInput, NotFound
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

CIDR = "10.11.0.0/28"
WRONG_MAC = "fa:16:3e:de:ad:00"


@pytest.fixture
def ctx(env: Env) -> Ctx:
    return env.ctx("flatdhcp")


def make_net(ctx: Ctx, cidr: str = CIDR, **kw: Any) -> Network:
    (net,) = N.create_networks(ctx, FLATDHCP, N.NetworkRequest("dhcp", cidr, **kw))
    return net


def boot(
    ctx: Ctx, project: str = "p1", host: str = "compute-1", **kw: Any
) -> tuple[str, list[dict[str, Any]]]:
    uuid = new_uuid()
    return uuid, I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(uuid, project, host, **kw))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def free(row: dict[str, Any]) -> bool:
    return row["instance_uuid"] is None and not row["allocated"] and not row["leased"]


# --- create and allocate ---------------------------------------------------------------------


def test_create_network_rows(env: Env) -> None:
    ctx = env.ctx("flatdhcp", flat_injected=True)
    net = make_net(ctx)
    assert (net.gateway, net.broadcast, net.dhcp_start) == ("10.11.0.1", "10.11.0.15", "10.11.0.2")
    assert net.manager == "flatdhcp"
    assert net.bridge == "br100"
    assert net.vlan is None
    assert net.injected is False  # flat_injected is for FlatManager only
    assert len(fixed_rows(ctx, CIDR)) == 16
    assert reserved_addresses(ctx, CIDR) == {"10.11.0.0", "10.11.0.1", "10.11.0.15"}


def test_allocate_single_host(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx, dns2="192.0.2.54")
    uuid, info = boot(ctx)
    assert info[0]["network"]["id"] == net.uuid
    assert info[0]["network"]["dhcp"] is True
    assert info[0]["network"]["multi_host"] is False
    sub = subnet(info)
    assert sub["gateway"] == "10.11.0.1"
    assert sub["dhcp_server"] == "10.11.0.1"  # the network host serves DHCP on the gateway
    assert sub["dns"] == ["192.0.2.53", "192.0.2.54"]
    assert first_ip(info) == "10.11.0.2"
    assert N.list_networks(ctx)[0].host == "net-host"
    assert I.show(ctx, uuid)["network_info"] == info
    # The VPN instance exists in VLAN mode only.
    req = I.AllocateRequest(new_uuid(), "p1", "compute-1", vpn=True)
    refused(env, InvalidInput, I.allocate_for_instance, ctx, FLATDHCP, req, match="VLAN")


# --- deallocate: force_dhcp_release (default) ---------------------------------------------------


def test_deallocate_never_leased_frees_at_once(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    uuid, info = boot(ctx)
    addr = first_ip(info)
    assert I.deallocate_for_instance(ctx, uuid) == {"uuid": uuid, "freed": [addr], "awaiting_release": []}
    assert free(fixed_rows(ctx, CIDR)[addr])
    # Whether a dhcp_release is queued as well is the host's business; the address is free.
    assert first_ip(boot(ctx)[1]) == addr


def test_deallocate_leased_waits_for_release(env: Env, ctx: Ctx) -> None:
    net = make_net(ctx)
    uuid, info = boot(ctx)
    addr, mac = first_ip(info), info[0]["address"]
    assert X.lease(ctx, addr, mac) == X.LeaseResult(addr, "leased")
    assert fixed_rows(ctx, CIDR)[addr]["leased"] is True

    assert I.deallocate_for_instance(ctx, uuid) == {"uuid": uuid, "freed": [], "awaiting_release": [addr]}
    row = fixed_rows(ctx, CIDR)[addr]
    assert row["instance_uuid"] == uuid  # still held
    assert row["allocated"] is False
    assert row["leased"] is True
    (pending,) = env.dhcp_releases()
    assert (pending["address"], pending["mac"], pending["host"], pending["network_id"]) == (
        addr,
        mac,
        "net-host",
        net.id,
    )
    # A held address is neither handed out nor reservable.
    _, info2 = boot(ctx)
    assert first_ip(info2) == "10.11.0.3"
    refused(env, AddressInUse, X.set_reserved, ctx, addr, True)
    # A lease renewal from another MAC changes nothing.
    before = env.dump()
    assert X.lease(ctx, addr, WRONG_MAC).action == "ignored"
    assert env.dump() == before
    # dnsmasq's `old` for the pending lease of the right MAC keeps it held and leased.
    assert X.lease(ctx, addr, mac.upper()).action == "leased"
    assert fixed_rows(ctx, CIDR)[addr]["instance_uuid"] == uuid

    # The DHCP server reports the lease gone: the address is free again.
    assert X.release(ctx, addr, mac) == X.LeaseResult(addr, "freed")
    assert free(fixed_rows(ctx, CIDR)[addr])
    assert env.dhcp_releases() == []
    assert first_ip(boot(ctx)[1]) == addr


def test_release_with_wrong_mac_does_not_free_address_awaiting_release(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    uuid, info = boot(ctx)
    addr, mac = first_ip(info), info[0]["address"]
    X.lease(ctx, addr, mac)
    I.deallocate_for_instance(ctx, uuid)
    before = env.dump()
    assert X.release(ctx, addr, WRONG_MAC).action == "ignored"
    assert env.dump() == before
    assert fixed_rows(ctx, CIDR)[addr]["instance_uuid"] == uuid


# --- deallocate without force_dhcp_release ---------------------------------------------------------


def test_without_force_dhcp_release_held_until_cleanup(env: Env) -> None:
    ctx = env.ctx("flatdhcp", force_dhcp_release=False, fixed_ip_disassociate_timeout=600)
    make_net(ctx)
    uuid, info = boot(ctx)
    addr = first_ip(info)
    # Never leased, yet held: the original's "it can take some time for the IP to become available".
    assert I.deallocate_for_instance(ctx, uuid) == {"uuid": uuid, "freed": [], "awaiting_release": [addr]}
    assert env.dhcp_releases() == []  # no dhcp_release without force_dhcp_release
    row = fixed_rows(ctx, CIDR)[addr]
    assert (row["instance_uuid"], row["allocated"]) == (uuid, False)
    assert first_ip(boot(ctx)[1]) == "10.11.0.3"
    # Before the timeout cleanup leaves it alone.
    before = env.dump()
    assert X.cleanup(ctx, now=utc_now()) == 0
    assert env.dump() == before
    assert X.cleanup(ctx, now=utc_now() + dt.timedelta(seconds=300)) == 0
    # After it, the address is free; allocated addresses are untouched.
    assert X.cleanup(ctx, now=utc_now() + dt.timedelta(days=1)) == 1
    rows = fixed_rows(ctx, CIDR)
    assert free(rows[addr])
    assert rows["10.11.0.3"]["allocated"] is True
    assert X.cleanup(ctx, now=utc_now() + dt.timedelta(days=1)) == 0
    # A leased address whose lease goes away is freed by the lease event, no timeout.
    uuid, info = boot(ctx)
    addr, mac = first_ip(info), info[0]["address"]
    X.lease(ctx, addr, mac)
    assert I.deallocate_for_instance(ctx, uuid)["awaiting_release"] == [addr]
    assert env.dhcp_releases() == []
    assert X.release(ctx, addr, mac).action == "freed"
    assert free(fixed_rows(ctx, CIDR)[addr])


# --- lease events on allocated addresses --------------------------------------------------------


def test_lease_events(env: Env, ctx: Ctx) -> None:
    make_net(ctx)
    uuid, info = boot(ctx)
    addr, mac = first_ip(info), info[0]["address"]

    def unchanged(fn: Callable[..., X.LeaseResult], *args: Any) -> X.LeaseResult:
        before = env.dump()
        out = fn(*args)
        assert env.dump() == before
        return out

    # A lease for another MAC is ignored.
    assert unchanged(X.lease, ctx, addr, WRONG_MAC).action == "ignored"
    # The instance's own lease is recorded (MAC compared case-insensitively).
    assert X.lease(ctx, addr, mac.upper()).action == "leased"
    assert fixed_rows(ctx, CIDR)[addr]["leased"] is True
    # A release from another MAC is ignored.
    assert unchanged(X.release, ctx, addr, WRONG_MAC).action == "ignored"
    # The guest's own DHCPRELEASE only clears leased: the instance keeps its address.
    assert X.release(ctx, addr, mac) == X.LeaseResult(addr, "released")
    row = fixed_rows(ctx, CIDR)[addr]
    assert (row["instance_uuid"], row["allocated"], row["leased"]) == (uuid, True, False)
    # Events about addresses nobody holds are ignored.
    assert unchanged(X.lease, ctx, "10.11.0.9", WRONG_MAC).action == "ignored"
    assert unchanged(X.release, ctx, "10.11.0.9", WRONG_MAC).action == "ignored"
    # Unknown address, malformed input.
    refused(env, NotFound, X.lease, ctx, "10.99.0.9", mac)
    refused(env, NotFound, X.release, ctx, "10.99.0.9", mac)
    refused(env, InvalidInput, X.lease, ctx, addr, "not-a-mac")
    refused(env, InvalidInput, X.release, ctx, addr, "fa:16:3e:00:00")
    refused(env, InvalidInput, X.lease, ctx, "10.11.0", mac)


# --- multi-host ---------------------------------------------------------------------------------


def test_multi_host_hosts_take_their_own_address(env: Env, ctx: Ctx) -> None:
    make_net(ctx, multi_host=True)
    a1, info = boot(ctx, host="compute-a")
    # The first instance on compute-a makes compute-a take an address of its own (which of
    # the two lowest free ones goes to whom is not part of the contract).
    (host_a,) = env.host_addresses()
    assert env.host_addresses() == {host_a: "compute-a"}
    assert {first_ip(info), host_a} == {"10.11.0.2", "10.11.0.3"}
    sub = subnet(info)
    assert (sub["gateway"], sub["dhcp_server"]) == (host_a, host_a)
    assert info[0]["network"]["multi_host"] is True
    row = fixed_rows(ctx, CIDR)[host_a]
    assert (row["instance_uuid"], row["allocated"], row["reserved"]) == (None, False, False)
    # A second instance on the same host uses the same gateway; no new host address.
    _, info = boot(ctx, host="compute-a")
    assert first_ip(info) == "10.11.0.4"
    assert subnet(info)["dhcp_server"] == host_a
    assert env.host_addresses() == {host_a: "compute-a"}
    # Another host takes another address.
    b1, info = boot(ctx, host="compute-b")
    (host_b,) = set(env.host_addresses()) - {host_a}
    assert env.host_addresses() == {host_a: "compute-a", host_b: "compute-b"}
    b1_ip = first_ip(info)
    assert {b1_ip, host_b} == {"10.11.0.5", "10.11.0.6"}
    assert (subnet(info)["gateway"], subnet(info)["dhcp_server"]) == (host_b, host_b)
    # A multi-host network has no single network host.
    assert N.list_networks(ctx)[0].host is None
    assert I.show(ctx, b1)["network_info"] == info
    assert subnet(I.show(ctx, a1)["network_info"])["gateway"] == host_a
    on_a = {r["address"] for r in X.list_fixed(ctx, host="compute-a")}
    assert on_a == {"10.11.0.2", "10.11.0.3", "10.11.0.4"}
    # Host addresses can be neither requested nor reserved.
    net_uuid = info[0]["network"]["id"]
    req = I.AllocateRequest(new_uuid(), "p1", "compute-a", [I.RequestedNetwork(net_uuid, host_b)])
    refused(env, AddressInUse, I.allocate_for_instance, ctx, FLATDHCP, req)
    refused(env, AddressInUse, X.set_reserved, ctx, host_a, True)
    # The host's address stays when its instances go; a leased one is released by that host.
    X.lease(ctx, b1_ip, info[0]["address"])
    assert I.deallocate_for_instance(ctx, b1)["awaiting_release"] == [b1_ip]
    assert [(r["address"], r["host"]) for r in env.dhcp_releases()] == [(b1_ip, "compute-b")]
    assert env.host_addresses() == {host_a: "compute-a", host_b: "compute-b"}
    _, info = boot(ctx, host="compute-b")
    assert subnet(info)["gateway"] == host_b
    assert first_ip(info) == "10.11.0.7"


def test_multi_host_share_dhcp_address(env: Env) -> None:
    ctx = env.ctx("flatdhcp", share_dhcp_address=True, multi_host=True)
    assert make_net(ctx).multi_host is True  # the multi_host option is the flag's default
    for host, expected in (("compute-a", "10.11.0.2"), ("compute-b", "10.11.0.3")):
        uuid, info = boot(ctx, host=host)
        assert first_ip(info) == expected  # no host address taken first
        sub = subnet(info)
        assert (sub["gateway"], sub["dhcp_server"]) == ("10.11.0.1", "10.11.0.1")
        assert I.show(ctx, uuid)["network_info"] == info
    assert env.host_addresses() == {}
    rows = fixed_rows(ctx, CIDR)
    assert rows["10.11.0.2"]["instance_uuid"] is not None
    assert rows["10.11.0.3"]["instance_uuid"] is not None


def test_multi_host_requested_address_wins_over_host_address(ctx: Ctx) -> None:
    net = make_net(ctx, multi_host=True)
    _, info = boot(ctx, host="compute-a", requested=[I.RequestedNetwork(net.uuid, "10.11.0.2")])
    assert first_ip(info) == "10.11.0.2"
    assert subnet(info)["gateway"] != "10.11.0.2"
