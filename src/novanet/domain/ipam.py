"""Address management rules: parsing, carving networks out of a range, reserved addresses.

Everything here is pure: it takes the facts (the range asked for, the networks and
floating addresses that exist) and returns what to create, or raises a typed error.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from novanet.domain.errors import CidrConflict, InvalidInput


def parse_network(value: str, what: str = "range") -> IPv4Network:
    """An IPv4 network in CIDR form with no host bits set."""
    text = value.strip()
    if ":" in text:
        raise InvalidInput(f"invalid {what} {value!r}: IPv6 is not supported here, give an IPv4 CIDR")
    if "/" not in text:
        raise InvalidInput(f"invalid {what} {value!r}: expected a CIDR such as 10.0.0.0/24")
    try:
        return IPv4Network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = IPv4Network(text, strict=False)
            raise InvalidInput(
                f"invalid {what} {value!r}: host bits are set, did you mean {fixed}?"
            ) from None
        raise InvalidInput(f"invalid {what} {value!r}: not an IPv4 CIDR") from None


def parse_address(value: str, what: str = "address") -> IPv4Address:
    text = value.strip()
    if ":" in text:
        raise InvalidInput(f"invalid {what} {value!r}: IPv6 is not supported here")
    try:
        return IPv4Address(text)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: not an IPv4 address") from None


# Ranges no instance network may use, with the reason given when one is refused.
SPECIAL_PURPOSE = (
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8) is not routable"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8) never leaves a host"),
    (IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16, holds the metadata address)"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4) cannot be assigned to hosts"),
    (IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4, incl. the broadcast 255.255.255.255)"),
)


def special_purpose(net: IPv4Network | IPv4Address) -> str | None:
    """Why ``net`` (or an address) overlaps a special-purpose range, None when it does not."""
    probe = IPv4Network(net) if isinstance(net, IPv4Address) else net
    for special, reason in SPECIAL_PURPOSE:
        if probe.overlaps(special):
            return reason
    return None


def usable_network(value: str, what: str = "range") -> IPv4Network:
    """``parse_network`` that also refuses special-purpose ranges, naming the reason."""
    net = parse_network(value, what)
    reason = special_purpose(net)
    if reason is not None:
        raise InvalidInput(f"invalid {what} {net}: overlaps {reason}")
    return net


def usable_address(value: str, what: str = "address") -> IPv4Address:
    """``parse_address`` that also refuses special-purpose addresses, naming the reason."""
    addr = parse_address(value, what)
    reason = special_purpose(addr)
    if reason is not None:
        raise InvalidInput(f"invalid {what} {addr}: {reason}")
    return addr


# One command takes at most a /12 of floating IPs (about a million rows), so that a typo
# (/1 for /21) cannot fill the memory of the process that reads it.
MIN_RANGE_PREFIX = 12


def parse_address_range(value: str) -> list[IPv4Address]:
    """A floating range: one address, or a CIDR whose usable host addresses are taken."""
    text = value.strip()
    if "/" not in text:
        return [usable_address(text, "ip range")]
    net = usable_network(text, "ip range")
    if net.prefixlen < MIN_RANGE_PREFIX:
        raise InvalidInput(
            f"ip range {text} is too large: at most a /{MIN_RANGE_PREFIX}"
            f" ({2 ** (32 - MIN_RANGE_PREFIX) - 2} addresses) at once"
        )
    if net.prefixlen >= 31:
        return list(net)
    return list(net.hosts())


@dataclass(frozen=True)
class Subnet:
    """One network carved out of the requested range, with its addressing plan."""

    index: int
    cidr: IPv4Network
    gateway: IPv4Address
    broadcast: IPv4Address
    dhcp_start: IPv4Address
    vpn_private_address: IPv4Address | None

    @property
    def netmask(self) -> IPv4Address:
        return self.cidr.netmask


def subnet_prefix(network_size: int) -> int:
    """The prefix length of subnets holding ``network_size`` addresses (rounded up)."""
    if network_size < 4:
        raise InvalidInput(f"invalid network size {network_size}: must be at least 4")
    if network_size > 2**30:
        raise InvalidInput(f"invalid network size {network_size}: too large")
    return 32 - math.ceil(math.log2(network_size))


def default_network_size(range_size: int, num_networks: int, option_size: int) -> int:
    """The original's default: the range split evenly, capped at the network_size option."""
    each = range_size // num_networks
    return min(each, option_size)


def carve(
    fixed_range: IPv4Network,
    num_networks: int,
    network_size: int,
    existing: Sequence[IPv4Network],
) -> list[IPv4Network]:
    """Pick ``num_networks`` subnets of ``network_size`` inside ``fixed_range``.

    As the original: subnets already used by an existing network inside the range are
    skipped and the next free one is taken; an existing network that holds or straddles
    the requested range is a conflict.
    """
    if num_networks < 1:
        raise InvalidInput(f"invalid number of networks {num_networks}: must be at least 1")
    prefix = subnet_prefix(network_size)
    if prefix < fixed_range.prefixlen:
        raise InvalidInput(
            f"range {fixed_range} holds {fixed_range.num_addresses} addresses, fewer than"
            f" the network size {network_size}"
        )
    available = 2 ** (prefix - fixed_range.prefixlen)
    if num_networks > available:
        raise InvalidInput(
            f"range {fixed_range} is too small for {num_networks} networks of"
            f" {2 ** (32 - prefix)} addresses (room for {available})"
        )
    inside: list[IPv4Network] = []
    for net in existing:
        if not net.overlaps(fixed_range):
            continue
        if net.subnet_of(fixed_range) and net != fixed_range:
            inside.append(net)
        else:
            raise CidrConflict(f"range {fixed_range} overlaps existing network {net}; pick a free range")
    picked: list[IPv4Network] = []
    if not inside:
        # Fast path: nothing to skip, the first subnets in order.
        step = 2 ** (32 - prefix)
        base = int(fixed_range.network_address)
        return [IPv4Network((base + i * step, prefix)) for i in range(num_networks)]
    for candidate in fixed_range.subnets(new_prefix=prefix):
        if any(candidate.overlaps(n) for n in inside):
            continue
        picked.append(candidate)
        if len(picked) == num_networks:
            return picked
    raise CidrConflict(
        f"range {fixed_range} has room for only {len(picked)} more networks of"
        f" {2 ** (32 - prefix)} addresses next to the existing ones"
    )


def check_floating_overlap(subnets: Iterable[IPv4Network], floating: Iterable[IPv4Address]) -> None:
    """Refuse fixed networks that would hold an existing floating address."""
    nets = list(subnets)
    for addr in floating:
        for net in nets:
            if addr in net:
                raise CidrConflict(
                    f"network {net} would hold floating IP {addr}; pick a range without floating IPs"
                )


@dataclass(frozen=True)
class ReservationPlan:
    """How many addresses at each end of a subnet are never handed out."""

    bottom: int
    top: int


def plan_subnet(
    index: int,
    cidr: IPv4Network,
    *,
    vlan_mode: bool,
    gateway: IPv4Address | None = None,
) -> Subnet:
    """Gateway, broadcast, DHCP start and VPN address of one subnet, as the original."""
    if gateway is not None and (gateway not in cidr or gateway in (cidr[0], cidr[-1])):
        raise InvalidInput(f"gateway {gateway} is not a host address of network {cidr}")
    gw = gateway if gateway is not None else cidr[1]
    if vlan_mode:
        return Subnet(index, cidr, gw, cidr[-1], cidr[3], cidr[2])
    return Subnet(index, cidr, gw, cidr[-1], cidr[2], None)


def reservation_plan(vlan_mode: bool, cnt_vpn_clients: int) -> ReservationPlan:
    if vlan_mode:
        return ReservationPlan(bottom=3, top=1 + cnt_vpn_clients)
    return ReservationPlan(bottom=2, top=1)


def reserved_offsets(
    subnet: Subnet, plan: ReservationPlan, fixed_cidr: IPv4Network | None = None
) -> set[int]:
    """Offsets (from the network address) of the addresses never handed out."""
    size = subnet.cidr.num_addresses
    base = int(subnet.cidr.network_address)
    offsets = set(range(min(plan.bottom, size)))
    offsets.update(range(max(size - plan.top, 0), size))
    offsets.add(int(subnet.gateway) - base)
    if fixed_cidr is not None:
        lo = int(fixed_cidr.network_address) - base
        hi = int(fixed_cidr.broadcast_address) - base
        offsets.update(i for i in range(0, max(lo, 0)))
        offsets.update(range(max(hi + 1, 0), size))
    return offsets


def allocatable_count(subnet: Subnet, reserved: set[int]) -> int:
    return subnet.cidr.num_addresses - len(reserved)


def structural_addresses(cidr: IPv4Network, gateway: IPv4Address | None) -> set[IPv4Address]:
    """Addresses whose reservation may not be lifted: network, broadcast, gateway."""
    out = {cidr.network_address, cidr.broadcast_address}
    if gateway is not None:
        out.add(gateway)
    return out


def is_ipv4_cidr(value: str) -> bool:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return False
    return True


def vpn_client_range(
    cidr: IPv4Network, reserved: Iterable[IPv4Address]
) -> tuple[IPv4Address, IPv4Address] | None:
    """The cloudpipe clients' range of a VLAN network: the reserved addresses right below
    its broadcast (the top ``cnt_vpn_clients`` of the plan), or None when there are none."""
    held = set(reserved)
    top = cidr.broadcast_address - 1
    low = top
    while low in held and low > cidr.network_address + 3:
        low -= 1
    if low == top:
        return None
    return low + 1, top
