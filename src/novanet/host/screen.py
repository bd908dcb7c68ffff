"""Screening a database snapshot before the host is built from it.

A value read from the database is untrusted input: a buggy writer or a hand-edited row
may hold a bridge name the kernel refuses, a DNS server with a newline, a MAC that is not
one. Such a row must not stop the host: ``screen`` drops every network, VIF, floating IP
and host underlay address whose values would be refused further down (by the kernel,
nftables or dnsmasq) and says why, naming the row. Everything else converges.

What a dropped row means for the host: a bad network is not set up here (no bridge, DHCP
or NAT range for it, its VIFs get no filter); a bad VIF gets no DHCP reservation and no
filter entry, so under the bridge's default policy its port stays unserved; a bad
floating IP is not NATed or bound; a bad underlay address is no VXLAN peer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from novanet.domain import ipam, names
from novanet.domain.errors import NovanetError
from novanet.domain.mac import normalize_mac
from novanet.domain.models import Network

if TYPE_CHECKING:  # desired_state calls screen: types only, no import cycle at run time
    from novanet.host.desired import SnapFloating, Snapshot, SnapVif

MAX_VLAN = 4094


@dataclass(frozen=True, order=True)
class Rejected:
    """A row left out of the host, with the reason (``kind`` is the table's meaning)."""

    kind: str  # network | vif | floating | host
    ref: str  # what names the row: network id and uuid, VIF uuid, address, host name
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}: {self.reason}"


class _Bad(Exception):
    pass


def _check(cond: bool, reason: str) -> None:
    if not cond:
        raise _Bad(reason)


def _address(value: object, what: str) -> IPv4Address:
    _check(isinstance(value, str), f"{what} is {value!r}, not text")
    assert isinstance(value, str)
    try:
        addr = IPv4Address(value)
    except ValueError:
        raise _Bad(f"{what} {value!r} is not an IPv4 address") from None
    _check(str(addr) == value, f"{what} {value!r} is not in canonical form")
    return addr


def _name(value: object, what: str) -> None:
    _check(isinstance(value, str), f"{what} is {value!r}, not text")
    try:
        names.interface_name(str(value), what)
    except NovanetError as exc:
        raise _Bad(str(exc)) from None


def _mac(value: object) -> None:
    _check(isinstance(value, str) and normalize_mac(value) == value, f"MAC {value!r} is not a lower-case MAC")
    _check(not int(str(value)[:2], 16) & 1, f"MAC {value} is a multicast address")


def check_network(net: Network, default_bridge: str | None) -> None:
    """Every value of a network that reaches the kernel, nftables or dnsmasq."""
    try:
        names.network_uuid(net.uuid)
    except NovanetError:
        raise _Bad(f"uuid {net.uuid!r} is not a UUID") from None
    _check(names.network_uuid(net.uuid) == net.uuid, f"uuid {net.uuid!r} is not in canonical form")
    _check(isinstance(net.cidr, str), f"cidr {net.cidr!r} is not text")
    try:
        cidr = IPv4Network(net.cidr, strict=True)
    except ValueError:
        raise _Bad(f"cidr {net.cidr!r} is not an IPv4 CIDR") from None
    _check(str(cidr) == net.cidr, f"cidr {net.cidr!r} is not in canonical form")
    _check(cidr.prefixlen <= 30, f"cidr {cidr} is too small for a network")
    reason = ipam.special_purpose(cidr)
    _check(reason is None, f"cidr {cidr} overlaps {reason}")
    _check(_address(net.netmask, "netmask") == cidr.netmask, f"netmask {net.netmask} does not match {cidr}")
    for what, value in (("gateway", net.gateway), ("dhcp_start", net.dhcp_start)):
        if value is not None:
            _check(_address(value, what) in cidr, f"{what} {value} is outside {cidr}")
    for what, value in (("dns1", net.dns1), ("dns2", net.dns2)):
        if value:
            addr = _address(value, what)
            _check(ipam.special_purpose(addr) is None, f"{what} {value} is {ipam.special_purpose(addr)}")
    bridge = net.bridge or default_bridge
    _check(bool(bridge), "no bridge (and no flat_network_bridge)")
    _name(bridge, "bridge")
    if net.bridge_interface is not None:
        _name(net.bridge_interface, "bridge_interface")
    if net.vlan is not None:
        _check(
            isinstance(net.vlan, int) and 1 <= net.vlan <= MAX_VLAN, f"vlan {net.vlan!r} is not 1-{MAX_VLAN}"
        )
    if net.vpn_public_address is not None:
        _address(net.vpn_public_address, "vpn_public_address")
    if net.vpn_private_address is not None:
        _check(
            _address(net.vpn_private_address, "vpn_private_address") in cidr,
            f"vpn_private_address {net.vpn_private_address} is outside {cidr}",
        )
    if net.vpn_public_port is not None:
        port = net.vpn_public_port
        _check(isinstance(port, int) and 1 <= port <= 65535, f"vpn_public_port {port!r} is not 1-65535")
    try:
        names.label(net.label)
    except (NovanetError, TypeError):
        raise _Bad(f"label {net.label!r} holds control characters") from None


def check_vif(v: SnapVif, net: Network | None) -> None:
    try:
        names.instance_uuid(v.uuid)
    except NovanetError:
        raise _Bad(f"uuid {v.uuid!r} is not a UUID") from None
    _mac(v.mac)
    try:
        names.dns_hostname(v.hostname)
    except (NovanetError, TypeError):
        raise _Bad(f"hostname {v.hostname!r} is not one DNS label") from None
    cidr = IPv4Network(net.cidr) if net is not None else None
    for a in v.addresses:
        addr = _address(a, "fixed address")
        _check(cidr is None or addr in cidr, f"fixed address {a} is outside {cidr}")


def _special(addr: IPv4Address) -> str | None:
    """``ipam.special_purpose`` of an address, with the common answer (none) found by
    membership tests: 10,000 floating IPs per full sync."""
    if not any(addr in net for net, _ in ipam.SPECIAL_PURPOSE):
        return None
    return ipam.special_purpose(addr)


def check_floating(f: SnapFloating) -> None:
    addr = _address(f.address, "address")
    _check(_special(addr) is None, f"address {addr} is {_special(addr)}")
    _address(f.fixed_address, "fixed address")
    _name(f.interface, "interface")


def _keep(rejected: list[Rejected], kind: str, ref: str, fn: Callable[..., object], *args: Any) -> bool:
    try:
        fn(*args)
    except _Bad as exc:
        rejected.append(Rejected(kind, ref, str(exc)))
        return False
    return True


def _valid(fn: Callable[..., object], *args: Any) -> bool:
    try:
        fn(*args)
    except _Bad:
        return False
    return True


def address_ok(value: object) -> bool:
    return _valid(_address, value, "address")


def interface_ok(value: object) -> bool:
    return _valid(_name, value, "interface")


def floating_ok(f: SnapFloating) -> bool:
    return _valid(check_floating, f)


def screen(snap: Snapshot, host: str, default_bridge: str | None) -> tuple[Snapshot, tuple[Rejected, ...]]:
    """``snap`` without the rows this host must not build from, and why each was left out.

    Only rows that matter to ``host`` are reported (a bad network nothing here uses, a
    bad floating IP NATed elsewhere are other hosts' to report); cloud-wide lists (pool
    addresses and interfaces) are simply filtered: they only steer the cleanup of stale
    /32s.
    """
    rejected: list[Rejected] = []
    relevant = {v.network_id for v in snap.vifs.values() if v.instance_host == host}
    relevant |= {n.id for n in snap.networks.values() if n.host == host}
    relevant |= {nid for nid, h in snap.host_addresses if h == host}
    nets = {}
    for i, n in snap.networks.items():
        bad: list[Rejected] = []
        if _keep(bad, "network", f"{n.id} ({n.uuid})", check_network, n, default_bridge):
            nets[i] = n
        elif i in relevant:
            rejected += bad
    vifs = {
        u: v
        for u, v in snap.vifs.items()
        if v.network_id in nets
        and (
            _keep(rejected, "vif", u, check_vif, v, nets[v.network_id])
            if v.instance_host == host or nets[v.network_id].host == host
            else _valid(check_vif, v, nets[v.network_id])
        )
    }
    floating = {a: f for a, f in snap.floating.items() if _keep(rejected, "floating", a, check_floating, f)}
    underlay = {
        name: a
        for name, a in snap.underlay.items()
        if _keep(rejected, "host", name, _address, a, "underlay address")
    }
    clean = dataclasses.replace(
        snap,
        networks=nets,
        vifs=vifs,
        floating=floating,
        host_addresses={k: a for k, a in snap.host_addresses.items() if k[0] in nets and address_ok(a)},
        underlay=underlay,
        vpn_pools={
            k: p for k, p in snap.vpn_pools.items() if k in nets and address_ok(p[0]) and address_ok(p[1])
        },
        floating_addresses=frozenset(filter(address_ok, snap.floating_addresses)),
        floating_interfaces=frozenset(filter(interface_ok, snap.floating_interfaces)),
        releases=tuple(
            r for r in snap.releases if r[0] in nets and address_ok(r[1]) and normalize_mac(r[2]) == r[2]
        ),
    )
    return clean, tuple(sorted(set(rejected)))
