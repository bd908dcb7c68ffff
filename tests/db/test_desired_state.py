"""Desired host state from real database snapshots: who is gateway, DHCP server and NAT."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from novanet import config as C
from novanet.agent.snapshot import read_snapshot, register_host
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.domain.modes import FLATDHCP, VLAN
from novanet.host.desired import desired_state
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx


@pytest.fixture
def make_ctx(db_url: str) -> Iterator:
    engines = []

    def make(**overrides):
        engine = create_engine(db_url)
        engines.append(engine)
        sync(engine)
        base = {"flat_network_bridge": "br100", "public_interface": "pub0", "my_ip": "192.0.2.10"}
        return Ctx(engine, C.load(overrides={**base, **overrides}))

    yield make
    for e in engines:
        e.dispose()


def state(ctx: Ctx, host: str):
    with ctx.engine.connect() as conn:
        snap = read_snapshot(conn, host)
    return desired_state(snap, host, ctx.config)


def alloc(ctx: Ctx, mode, project: str, host: str) -> tuple[str, dict]:
    u = str(uuid.uuid4())
    info = I.allocate_for_instance(ctx, mode, I.AllocateRequest(u, project, host))
    return u, info[0]


def test_nothing_lands_before_the_first_instance(make_ctx) -> None:
    ctx = make_ctx(network_host="net1")
    N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="n", fixed_range_v4="10.0.0.0/24"))
    s = state(ctx, "net1")
    assert s.bridges == () and s.dhcp == () and s.nat is None and s.vifs == ()


def test_single_host_flatdhcp_network_host_serves_every_instance(make_ctx) -> None:
    ctx = make_ctx(network_host="net1", flat_interface="eth1")
    N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="n", fixed_range_v4="10.0.0.0/24"))
    _, vif_a = alloc(ctx, FLATDHCP, "p1", "cmp1")
    _, vif_b = alloc(ctx, FLATDHCP, "p1", "cmp2")
    net_host = state(ctx, "net1")
    (br,) = net_host.bridges
    assert br.name == "br100" and br.addresses == ("10.0.0.1/24",)
    assert br.segment is not None and br.segment.kind == "nic" and br.segment.name == "eth1"
    (dhcp,) = net_host.dhcp
    assert dhcp.listen_address == "10.0.0.1" and dhcp.router == "10.0.0.1"
    assert {(h.mac, h.address) for h in dhcp.hosts} == {
        (vif_a["address"], vif_a["network"]["subnets"][0]["ips"][0]["address"]),
        (vif_b["address"], vif_b["network"]["subnets"][0]["ips"][0]["address"]),
    }
    assert net_host.nat is not None and net_host.nat.snat_ranges == ("10.0.0.0/24",)
    assert net_host.nat.routing_source_ip == "192.0.2.10"
    assert net_host.vifs == ()  # no instance runs on the network host
    compute = state(ctx, "cmp1")
    (cbr,) = compute.bridges
    assert cbr.name == "br100" and cbr.addresses == ()  # plugged in, no gateway role
    assert compute.dhcp == () and compute.nat is None
    (vf,) = compute.vifs
    assert vf.mac == vif_a["address"] and vf.bridge == "br100"
    assert vf.addresses == (vif_a["network"]["subnets"][0]["ips"][0]["address"],)


def test_multi_host_each_host_serves_its_own(make_ctx) -> None:
    ctx = make_ctx()
    req = N.NetworkRequest(label="n", fixed_range_v4="10.0.0.0/24", multi_host=True)
    N.create_networks(ctx, FLATDHCP, req)
    _, a = alloc(ctx, FLATDHCP, "p1", "h1")
    ub, b = alloc(ctx, FLATDHCP, "p1", "h2")
    s1, s2 = state(ctx, "h1"), state(ctx, "h2")
    gw1 = a["network"]["subnets"][0]["gateway"]
    gw2 = b["network"]["subnets"][0]["gateway"]
    assert gw1 != gw2
    assert s1.bridges[0].addresses == (f"{gw1}/24",)
    assert s2.bridges[0].addresses == (f"{gw2}/24",)
    assert [h.mac for h in s1.dhcp[0].hosts] == [a["address"]]
    assert [h.mac for h in s2.dhcp[0].hosts] == [b["address"]]
    fl = F.create_pool(ctx, "203.0.113.0/29")
    assert fl == 6
    addr = F.allocate(ctx, "p1")["address"]
    F.associate(ctx, addr, ub)
    s1, s2 = state(ctx, "h1"), state(ctx, "h2")
    assert s1.nat is not None and s1.nat.floating == ()
    assert s2.nat is not None and [(f.address, f.fixed_address) for f in s2.nat.floating] == [
        (addr, b["network"]["subnets"][0]["ips"][0]["address"])
    ]


def test_vlan_projects_get_vxlan_segments_with_peers(make_ctx) -> None:
    ctx = make_ctx(vlan_segmentation="vxlan", vxlan_interface="under0", multi_host=True)
    N.create_networks(ctx, VLAN, N.NetworkRequest(label="v", fixed_range_v4="10.1.0.0/16", num_networks=2))
    register_host(ctx, "h1", "198.51.100.1")
    register_host(ctx, "h2", "198.51.100.2")
    alloc(ctx, VLAN, "pa", "h1")
    alloc(ctx, VLAN, "pa", "h2")
    alloc(ctx, VLAN, "pb", "h1")
    s1 = state(ctx, "h1")
    segs = {b.name: b.segment for b in s1.bridges}
    assert set(segs) == {"br100", "br101"}
    assert segs["br100"].kind == "vxlan" and segs["br100"].ident == 100
    assert segs["br100"].remotes == ("198.51.100.2",)  # pa is on both hosts
    assert segs["br101"].remotes == ()  # pb only here
    assert segs["br100"].local == "198.51.100.1"
    s2 = state(ctx, "h2")
    assert [b.name for b in s2.bridges] == ["br100"]


def test_deallocate_with_lease_queues_a_release_for_the_dhcp_host(make_ctx) -> None:
    ctx = make_ctx(network_host="net1")
    N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="n", fixed_range_v4="10.0.0.0/24"))
    u, vif = alloc(ctx, FLATDHCP, "p1", "cmp1")
    address = vif["network"]["subnets"][0]["ips"][0]["address"]
    from novanet.service import fixed as X

    assert X.lease(ctx, address, vif["address"]).action == "leased"
    I.deallocate_for_instance(ctx, u)
    assert state(ctx, "net1").releases == (("br100", address, vif["address"]),)
    assert state(ctx, "cmp1").releases == ()
