"""IPAM rules: parsing ranges, carving networks, the addressing plan and reserved addresses."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novanet.domain import ipam
from novanet.domain.errors import CidrConflict, InvalidInput

N = IPv4Network
A = IPv4Address


# --- parse_network -------------------------------------------------------------------


def test_parse_network_accepts_cidr_and_strips_blanks() -> None:
    assert ipam.parse_network(" 10.0.0.0/24 ") == N("10.0.0.0/24")
    assert ipam.parse_network("192.168.4.0/30") == N("192.168.4.0/30")


@pytest.mark.parametrize(
    "value",
    ["10.0.0.0/33", "10.0.0.0/-1", "garbage", "10.0.0.0/abc", "300.0.0.0/8", "10.0.0/24", "", "/24"],
)
def test_parse_network_refuses_garbage(value: str) -> None:
    with pytest.raises(InvalidInput, match="invalid"):
        ipam.parse_network(value)


def test_parse_network_refuses_plain_address_and_asks_for_cidr() -> None:
    with pytest.raises(InvalidInput, match="CIDR"):
        ipam.parse_network("10.0.0.0")


@pytest.mark.parametrize("value", ["fd00::/64", "::/0", "2001:db8::1"])
def test_parse_network_refuses_ipv6(value: str) -> None:
    with pytest.raises(InvalidInput, match="IPv6"):
        ipam.parse_network(value)


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [("10.0.0.1/24", "10.0.0.0/24"), ("192.168.1.77/26", "192.168.1.64/26"), ("10.1.2.3/8", "10.0.0.0/8")],
)
def test_parse_network_host_bits_set_suggests_the_network(value: str, suggestion: str) -> None:
    with pytest.raises(InvalidInput, match="host bits") as info:
        ipam.parse_network(value)
    assert f"did you mean {suggestion}?" in info.value.message


def test_parse_network_names_what_was_asked_for() -> None:
    with pytest.raises(InvalidInput, match="fixed range"):
        ipam.parse_network("nope", "fixed range")


# --- parse_address / parse_address_range ---------------------------------------------------


def test_parse_address() -> None:
    assert ipam.parse_address(" 10.0.0.5 ") == A("10.0.0.5")
    for bad in ("10.0.0.256", "fe80::1", "", "10.0.0.0/24", "x"):
        with pytest.raises(InvalidInput):
            ipam.parse_address(bad)


def test_address_range_single_address() -> None:
    assert ipam.parse_address_range("203.0.113.7") == [A("203.0.113.7")]


def test_address_range_cidr_gives_host_addresses_only() -> None:
    got = ipam.parse_address_range("203.0.113.0/29")
    assert got == [A(f"203.0.113.{i}") for i in range(1, 7)]
    assert A("203.0.113.0") not in got
    assert A("203.0.113.7") not in got


def test_address_range_cidr_of_a_24() -> None:
    got = ipam.parse_address_range("198.51.100.0/24")
    assert len(got) == 254
    assert got[0] == A("198.51.100.1")
    assert got[-1] == A("198.51.100.254")


def test_address_range_slash31_and_slash32() -> None:
    # RFC 3021 point-to-point /31: both addresses are usable; a /32 is one address.
    assert ipam.parse_address_range("203.0.113.4/31") == [A("203.0.113.4"), A("203.0.113.5")]
    assert ipam.parse_address_range("203.0.113.9/32") == [A("203.0.113.9")]


@pytest.mark.parametrize("value", ["203.0.113.1/29", "203.0.113.0/33", "nope", "2001:db8::/64", "::1"])
def test_address_range_refusals(value: str) -> None:
    with pytest.raises(InvalidInput):
        ipam.parse_address_range(value)


# --- subnet sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "prefix"),
    [(4, 30), (5, 29), (8, 29), (9, 28), (16, 28), (20, 27), (100, 25), (128, 25), (256, 24), (257, 23)],
)
def test_network_size_rounds_up_to_a_power_of_two(size: int, prefix: int) -> None:
    assert ipam.subnet_prefix(size) == prefix


@pytest.mark.parametrize("size", [0, 1, 2, 3, -8, 2**30 + 1])
def test_network_size_out_of_bounds(size: int) -> None:
    with pytest.raises(InvalidInput, match="network size"):
        ipam.subnet_prefix(size)


def test_default_network_size_splits_range_capped_by_option() -> None:
    assert ipam.default_network_size(256, 4, 256) == 64
    assert ipam.default_network_size(65536, 1, 256) == 256
    assert ipam.default_network_size(256, 1, 256) == 256


# --- carve ---------------------------------------------------------------------------------


def test_carve_first_subnets_in_order() -> None:
    got = ipam.carve(N("10.0.0.0/24"), 3, 64, [])
    assert got == [N("10.0.0.0/26"), N("10.0.0.64/26"), N("10.0.0.128/26")]


def test_carve_whole_range_as_one_network() -> None:
    assert ipam.carve(N("10.0.0.0/24"), 1, 256, []) == [N("10.0.0.0/24")]


def test_carve_rounds_network_size_up() -> None:
    # 20 addresses asked -> /27 (32 addresses).
    assert ipam.carve(N("10.0.0.0/24"), 2, 20, []) == [N("10.0.0.0/27"), N("10.0.0.32/27")]


def test_carve_skips_existing_subnets_inside_the_range() -> None:
    existing = [N("10.0.0.0/26"), N("10.0.0.128/26")]
    got = ipam.carve(N("10.0.0.0/24"), 2, 64, existing)
    assert got == [N("10.0.0.64/26"), N("10.0.0.192/26")]


def test_carve_skips_existing_networks_of_other_sizes() -> None:
    # A small network in the middle of the first candidate blocks that candidate only.
    existing = [N("10.0.0.40/29")]
    got = ipam.carve(N("10.0.0.0/24"), 2, 64, existing)
    assert got == [N("10.0.0.64/26"), N("10.0.0.128/26")]


def test_carve_ignores_networks_outside_the_range() -> None:
    existing = [N("10.0.1.0/24"), N("192.168.0.0/16")]
    assert ipam.carve(N("10.0.0.0/24"), 1, 256, existing) == [N("10.0.0.0/24")]


@pytest.mark.parametrize(
    "existing",
    [
        N("10.0.0.0/24"),  # the very same range
        N("10.0.0.0/16"),  # holds the range
        N("10.0.0.0/23"),  # holds it, starting at the same address
        N("0.0.0.0/0"),
    ],
)
def test_carve_conflict_when_an_existing_network_holds_the_range(existing: IPv4Network) -> None:
    with pytest.raises(CidrConflict, match="overlaps"):
        ipam.carve(N("10.0.0.0/24"), 1, 64, [existing])


def test_carve_conflict_when_existing_subnets_leave_no_room() -> None:
    existing = [N("10.0.0.0/26"), N("10.0.0.64/26")]
    with pytest.raises(CidrConflict, match="room for only 2"):
        ipam.carve(N("10.0.0.0/24"), 3, 64, existing)


def test_carve_range_smaller_than_network_size() -> None:
    with pytest.raises(InvalidInput, match="fewer than"):
        ipam.carve(N("10.0.0.0/28"), 1, 64, [])


def test_carve_too_many_networks() -> None:
    with pytest.raises(InvalidInput, match="too small"):
        ipam.carve(N("10.0.0.0/24"), 5, 64, [])


def test_carve_needs_at_least_one_network() -> None:
    with pytest.raises(InvalidInput):
        ipam.carve(N("10.0.0.0/24"), 0, 64, [])


@st.composite
def carve_cases(draw: st.DrawFn) -> tuple[IPv4Network, int, int, list[IPv4Network]]:
    range_prefix = draw(st.integers(16, 28))
    base = draw(st.integers(0, 2 ** (range_prefix - 8) - 1)) << (32 - range_prefix)
    fixed_range = N((int(A("10.0.0.0")) + base, range_prefix))
    sub_prefix = draw(st.integers(range_prefix, 30))
    size = draw(st.sampled_from([2 ** (32 - sub_prefix), 2 ** (32 - sub_prefix) - 1]))
    size = max(size, 4)
    # Existing networks strictly inside the range, pairwise disjoint.
    existing: list[IPv4Network] = []
    for _ in range(draw(st.integers(0, 4))):
        p = draw(st.integers(range_prefix + 1, 30))
        cands = list(fixed_range.subnets(new_prefix=p))
        net = cands[draw(st.integers(0, len(cands) - 1))]
        if not any(net.overlaps(e) for e in existing):
            existing.append(net)
    num = draw(st.integers(1, 8))
    return fixed_range, num, size, existing


@settings(max_examples=300, database=None, deadline=None)
@given(carve_cases())
def test_carve_property_disjoint_inside_and_first_free(
    case: tuple[IPv4Network, int, int, list[IPv4Network]],
) -> None:
    fixed_range, num, size, existing = case
    try:
        got = ipam.carve(fixed_range, num, size, existing)
    except (InvalidInput, CidrConflict):
        # Refused only when the free candidates really do not suffice.
        prefix = ipam.subnet_prefix(size)
        if prefix < fixed_range.prefixlen:
            return
        free = [c for c in fixed_range.subnets(new_prefix=prefix) if not any(c.overlaps(e) for e in existing)]
        assert len(free) < num
        return
    assert len(got) == num
    expected_size = 2 ** (32 - ipam.subnet_prefix(size))
    for i, net in enumerate(got):
        assert net.subnet_of(fixed_range)
        assert net.num_addresses == expected_size
        assert not any(net.overlaps(e) for e in existing)
        assert all(not net.overlaps(other) for other in got[i + 1 :])
    assert got == sorted(got)
    # "First free in order": every candidate before the last one picked was either
    # picked or blocked by an existing network.
    for cand in fixed_range.subnets(new_prefix=got[0].prefixlen):
        if cand > got[-1]:
            break
        assert cand in got or any(cand.overlaps(e) for e in existing)


# --- plan_subnet ---------------------------------------------------------------------------


def test_plan_subnet_flat() -> None:
    s = ipam.plan_subnet(0, N("10.0.0.0/24"), vlan_mode=False)
    assert s.gateway == A("10.0.0.1")
    assert s.broadcast == A("10.0.0.255")
    assert s.dhcp_start == A("10.0.0.2")
    assert s.vpn_private_address is None
    assert s.netmask == A("255.255.255.0")


def test_plan_subnet_vlan() -> None:
    s = ipam.plan_subnet(3, N("10.0.1.0/27"), vlan_mode=True)
    assert s.index == 3
    assert s.gateway == A("10.0.1.1")
    assert s.broadcast == A("10.0.1.31")
    assert s.vpn_private_address == A("10.0.1.2")
    assert s.dhcp_start == A("10.0.1.3")
    assert s.netmask == A("255.255.255.224")


def test_plan_subnet_custom_gateway() -> None:
    s = ipam.plan_subnet(0, N("10.0.0.0/24"), vlan_mode=False, gateway=A("10.0.0.254"))
    assert s.gateway == A("10.0.0.254")
    assert s.dhcp_start == A("10.0.0.2")


@pytest.mark.parametrize("gw", ["10.0.1.1", "10.0.0.0", "10.0.0.255"])
def test_plan_subnet_refuses_gateway_that_is_not_a_host_address(gw: str) -> None:
    with pytest.raises(InvalidInput, match="gateway"):
        ipam.plan_subnet(0, N("10.0.0.0/24"), vlan_mode=False, gateway=A(gw))


# --- reserved offsets --------------------------------------------------------------------------


def _flat(cidr: str, gateway: str | None = None) -> ipam.Subnet:
    return ipam.plan_subnet(0, N(cidr), vlan_mode=False, gateway=A(gateway) if gateway else None)


def _vlan(cidr: str) -> ipam.Subnet:
    return ipam.plan_subnet(0, N(cidr), vlan_mode=True)


def test_reserved_flat_bottom_two_top_one() -> None:
    plan = ipam.reservation_plan(False, cnt_vpn_clients=5)  # VPN clients do not matter in flat
    assert plan == ipam.ReservationPlan(bottom=2, top=1)
    assert ipam.reserved_offsets(_flat("10.0.0.0/24"), plan) == {0, 1, 255}


def test_reserved_vlan_bottom_three_top_one() -> None:
    plan = ipam.reservation_plan(True, cnt_vpn_clients=0)
    assert ipam.reserved_offsets(_vlan("10.0.0.0/24"), plan) == {0, 1, 2, 255}


def test_reserved_vlan_keeps_vpn_client_addresses_at_the_top() -> None:
    plan = ipam.reservation_plan(True, cnt_vpn_clients=3)
    assert plan == ipam.ReservationPlan(bottom=3, top=4)
    assert ipam.reserved_offsets(_vlan("10.0.0.0/28"), plan) == {0, 1, 2, 12, 13, 14, 15}


def test_reserved_custom_gateway_is_reserved_too() -> None:
    plan = ipam.reservation_plan(False, 0)
    assert ipam.reserved_offsets(_flat("10.0.0.0/24", "10.0.0.10"), plan) == {0, 1, 10, 255}


def test_reserved_fixed_cidr_lower_half() -> None:
    plan = ipam.reservation_plan(False, 0)
    got = ipam.reserved_offsets(_flat("10.0.0.0/24"), plan, N("10.0.0.0/25"))
    assert got == {0, 1} | set(range(128, 256))


def test_reserved_fixed_cidr_in_the_middle() -> None:
    plan = ipam.reservation_plan(False, 0)
    got = ipam.reserved_offsets(_flat("10.0.0.0/24"), plan, N("10.0.0.64/26"))
    assert set(range(0, 64)) <= got
    assert set(range(128, 256)) <= got
    assert not got & set(range(65, 127))


def test_allocatable_count() -> None:
    sub = _flat("10.0.0.0/28")
    reserved = ipam.reserved_offsets(sub, ipam.reservation_plan(False, 0))
    assert ipam.allocatable_count(sub, reserved) == 13


@settings(max_examples=200, database=None, deadline=None)
@given(
    prefix=st.integers(22, 30),
    vlan=st.booleans(),
    cnt_vpn=st.integers(0, 3),
    gw_pick=st.one_of(st.none(), st.integers(1, 10**6)),
)
def test_reserved_offsets_property(prefix: int, vlan: bool, cnt_vpn: int, gw_pick: int | None) -> None:
    cidr = N((int(A("10.9.0.0")), prefix))
    size = cidr.num_addresses
    gateway = cidr[1 + gw_pick % (size - 2)] if gw_pick is not None else None
    sub = ipam.plan_subnet(0, cidr, vlan_mode=vlan, gateway=gateway)
    plan = ipam.reservation_plan(vlan, cnt_vpn)
    got = ipam.reserved_offsets(sub, plan)
    assert {0, 1, size - 1} <= got
    assert int(sub.gateway) - int(cidr.network_address) in got
    assert all(0 <= o < size for o in got)
    if vlan:
        assert 2 in got
        assert set(range(size - 1 - cnt_vpn, size)) <= got
    # The DHCP start is handed out (unless the gateway or the top reservation covers it).
    dhcp_offset = int(sub.dhcp_start) - int(cidr.network_address)
    if gateway is None and dhcp_offset < size - plan.top:
        assert dhcp_offset not in got


def test_structural_addresses() -> None:
    got = ipam.structural_addresses(N("10.0.0.0/28"), A("10.0.0.14"))
    assert got == {A("10.0.0.0"), A("10.0.0.15"), A("10.0.0.14")}
    assert ipam.structural_addresses(N("10.0.0.0/28"), None) == {A("10.0.0.0"), A("10.0.0.15")}


def test_check_floating_overlap() -> None:
    ipam.check_floating_overlap([N("10.0.0.0/28")], [A("10.0.0.16")])
    with pytest.raises(CidrConflict, match=r"10\.0\.0\.5"):
        ipam.check_floating_overlap([N("10.0.0.0/28")], [A("203.0.113.1"), A("10.0.0.5")])


def test_is_ipv4_cidr() -> None:
    assert ipam.is_ipv4_cidr("10.0.0.0/8")
    assert not ipam.is_ipv4_cidr("10.0.0.1/8")
    assert not ipam.is_ipv4_cidr("fd00::/8")


def test_vpn_client_range_is_the_reserved_top() -> None:
    from ipaddress import IPv4Address as A
    from ipaddress import IPv4Network as N

    from novanet.domain import ipam as I

    cidr = N("10.5.0.0/24")
    sub = I.plan_subnet(0, cidr, vlan_mode=True)
    plan = I.reservation_plan(True, 4)
    offsets = I.reserved_offsets(sub, plan)
    # network, gateway, VPN address at the bottom; 4 clients and the broadcast at the top
    assert offsets == {0, 1, 2, 251, 252, 253, 254, 255}
    reserved = [A(int(cidr.network_address) + o) for o in offsets]
    assert I.vpn_client_range(cidr, reserved) == (A("10.5.0.251"), A("10.5.0.254"))
    none = [A(int(cidr.network_address) + o) for o in I.reserved_offsets(sub, I.reservation_plan(True, 0))]
    assert I.vpn_client_range(cidr, none) is None
