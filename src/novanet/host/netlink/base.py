"""The contract between the link realizer and a kernel: errors, records, ``LinkBackend``.

Both backends (``netlink_pyroute.PyrouteLinks`` on the kernel, ``netlink_fake.FakeLinks``
in memory) speak in these terms, so the convergence code in ``netlink`` and ``vif`` never
sees pyroute2 messages.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

from novanet.domain.errors import InvalidInput, NovanetError

ZERO_MAC = "00:00:00:00:00:00"
# The routing protocol number that marks a route as novanet's (free in rtnetlink.h and
# /etc/iproute2/rt_protos): the local routes that make floating IPs local addresses.
PROTO_NOVANET = 78


class LinkError(NovanetError):
    """The kernel refused a link, address, route or FDB operation."""

    code = "link_error"
    http_status = 500
    exit_code = 8


class ObjectExists(LinkError):
    code = "link_object_exists"


class ObjectNotFound(LinkError):
    code = "link_object_not_found"


class NamespaceNotFound(ObjectNotFound):
    code = "netns_not_found"


class KernelFeatureMissing(LinkError):
    """The running kernel lacks a feature (a module such as ``8021q``) the host spec needs."""

    code = "kernel_feature_missing"

    def __init__(self, feature: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(f"the kernel lacks {feature}{extra}")
        self.feature = feature


@dataclass(frozen=True)
class Link:
    """One network interface as the kernel reports it.

    ``kind`` is the rtnetlink kind ("bridge", "vxlan", "vlan", "veth", "tun") or None for a
    device without one (a physical NIC). ``parent`` is the lower device of vxlan/vlan.
    """

    name: str
    index: int
    kind: str | None
    up: bool
    mtu: int
    mac: str
    master: str | None = None
    stp: bool | None = None  # bridge
    forward_delay: int | None = None  # bridge, in centiseconds
    vni: int | None = None  # vxlan
    local: str | None = None  # vxlan
    port: int | None = None  # vxlan
    learning: bool | None = None  # vxlan
    vlan_id: int | None = None  # vlan
    parent: str | None = None  # vxlan, vlan


@dataclass(frozen=True)
class Address:
    """An IPv4 address; ``primary`` is False for a secondary of the same subnet."""

    cidr: str
    primary: bool = True


@dataclass(frozen=True)
class Route:
    """A main-table IPv4 route through one device (the device is not part of the record)."""

    dst: str  # CIDR, "0.0.0.0/0" for the default route
    gateway: str | None = None
    metric: int | None = None
    scope: int = 0  # 0 universe, 253 link
    proto: int = 4  # 3 boot, 4 static, 16 dhcp
    prefsrc: str | None = None


class LinkBackend(Protocol):
    """What the agent needs from the kernel's links, addresses, routes and VXLAN FDB.

    Every mutating call raises ``ObjectExists`` / ``ObjectNotFound`` like the kernel's
    EEXIST / ENODEV, ``KernelFeatureMissing`` when a link kind is unavailable and
    ``LinkError`` for any other refusal.
    """

    def links(self) -> list[Link]: ...
    def link(self, name: str) -> Link | None: ...
    def add_bridge(self, name: str) -> None: ...
    def set_bridge_options(self, name: str, *, stp: bool, forward_delay: int) -> None: ...
    def add_vxlan(self, name: str, *, vni: int, parent: str | None, local: str | None, port: int) -> None: ...
    def add_vlan(self, name: str, *, parent: str, vlan_id: int) -> None: ...
    def add_veth(self, name: str, peer: str, *, mtu: int | None = None) -> None: ...
    def add_tap(self, name: str) -> None: ...
    def set_up(self, name: str) -> None: ...
    def set_mtu(self, name: str, mtu: int) -> None: ...
    def set_mac(self, name: str, mac: str) -> None: ...
    def set_master(self, name: str, master: str | None) -> None: ...
    def move_to_netns(self, name: str, netns: str, new_name: str) -> None: ...
    def in_netns(self, netns: str) -> LinkBackend: ...
    def delete_link(self, name: str) -> None: ...
    def addresses(self, name: str) -> list[Address]: ...
    def add_address(self, name: str, cidr: str) -> None: ...
    def delete_address(self, name: str, cidr: str) -> None: ...
    def set_host_addresses(self, name: str, add: list[str], delete: list[str]) -> None:
        """Add and delete many /32 addresses at once; present/absent ones are fine. (Floating
        IPs were /32 addresses before they became local routes: a full sync removes those.)"""
        ...

    def local_routes(self) -> dict[str, set[str]]:
        """Floating IPs made local by novanet, by device: the routes of type local in table
        local with protocol ``PROTO_NOVANET`` (bare /32 addresses)."""
        ...

    def set_local_routes(self, name: str, add: list[str], delete: list[str]) -> None:
        """Add and delete many of those routes on ``name`` at once (``ip route replace local
        A dev NAME table local proto novanet scope host src A``); present/absent ones are
        fine."""
        ...

    def routes(self, name: str) -> list[Route]: ...
    def add_route(self, name: str, route: Route) -> None: ...
    def delete_route(self, name: str, route: Route) -> None: ...
    def ipv6_off(self, name: str) -> bool:
        """Whether IPv6 is disabled on ``name`` (no address, no RA, no autoconf)."""
        ...

    def disable_ipv6(self, name: str) -> None:
        """disable_ipv6=1, accept_ra=0, autoconf=0 on ``name`` (novanet is IPv4-only: a
        router advertisement must never give one of our links an address or a route)."""
        ...

    def fdb_remotes(self, name: str) -> list[str]: ...
    def add_fdb_remote(self, name: str, dst: str) -> None: ...
    def delete_fdb_remote(self, name: str, dst: str) -> None: ...
    def close(self) -> None: ...


def canonical_cidr(value: str) -> str:
    """``10.0.0.1/24`` form of an IPv4 interface address (a bare address means /32)."""
    try:
        return str(IPv4Interface(value))
    except ValueError:
        raise InvalidInput(f"invalid IPv4 address {value!r}") from None


def ipv4(value: str) -> str:
    """A bare IPv4 address in canonical form."""
    try:
        return str(IPv4Address(value))
    except ValueError:
        raise InvalidInput(f"invalid IPv4 address {value!r}") from None


def subnet_of(cidr: str) -> IPv4Network:
    """The subnet that decides primary/secondary in the kernel: same prefix, same length."""
    return IPv4Interface(cidr).network


def undo_steps(steps: list[Callable[[], None]]) -> None:
    """Undo the finished steps of a failed multi-step operation, newest first, best effort."""
    for step in reversed(steps):
        with suppress(LinkError):
            step()


def existing(backend: LinkBackend, name: str) -> Link:
    """The link ``name``, which must be there (it vanishing under us is an error)."""
    link = backend.link(name)
    if link is None:
        raise ObjectNotFound(f"interface {name} not found")
    return link
