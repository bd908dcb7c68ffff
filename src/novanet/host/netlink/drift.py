"""Drift: what differs between the expected bridges and the host, in words (``check``).

Also the predicates ``netlink.ensure_bridges`` shares with it, so that "converged" means
the same thing to both.
"""

from __future__ import annotations

from collections.abc import Sequence

from novanet.domain.names import interface_name
from novanet.host.model import Bridge, Segment
from novanet.host.netlink.base import Address, Link, LinkBackend, LinkError, canonical_cidr, subnet_of

SEGMENT_KINDS = {"vxlan": "vxlan", "vlan": "vlan"}  # segment kind -> rtnetlink kind


def check_bridge_names(bridge: Bridge) -> None:
    """Reject a bad name before anything reaches the kernel."""
    interface_name(bridge.name, "bridge")
    seg = bridge.segment
    if seg is not None:
        if seg.kind not in ("nic", "vxlan", "vlan"):
            raise LinkError(f"unknown segment kind {seg.kind!r} for bridge {bridge.name}")
        interface_name(seg.name, f"{seg.kind} segment")
        if seg.parent is not None:
            interface_name(seg.parent, "segment parent")


def segment_mismatch(seg: Segment, dev: Link) -> str | None:
    want_kind = SEGMENT_KINDS[seg.kind]
    if dev.kind != want_kind:
        return f"{seg.name} is a {dev.kind or 'device'}, expected {want_kind}"
    if seg.kind == "vxlan":
        got = (dev.vni, dev.parent, dev.local, dev.port)
        want = (seg.ident, seg.parent, seg.local, seg.port)
        if got != want:
            return f"{seg.name} has vni/dev/local/port {got}, expected {want}"
        if dev.learning:
            # a learning VXLAN device takes any sender of a valid packet as a remote
            return f"{seg.name} learns remotes from traffic, expected learning off"
    elif (dev.vlan_id, dev.parent) != (seg.ident, seg.parent):
        return f"{seg.name} has id {dev.vlan_id} on {dev.parent}, expected {seg.ident} on {seg.parent}"
    return None


def subnet_in_order(have: list[Address], want: list[str]) -> bool:
    """The kernel list of one subnet matches when ``want[0]`` is its primary and the
    wanted addresses present appear in wanted order (missing ones are simply appended)."""
    if not have:
        return True
    present = [a.cidr for a in have if a.cidr in want]
    return have[0].cidr == want[0] and present == want[: len(present)]


# -- drift -----------------------------------------------------------------------------------
def drift(expected: Sequence[Bridge], backend: LinkBackend) -> list[str]:
    """Human-readable differences between the expected bridges and the host."""
    out: list[str] = []
    for b in expected:
        check_bridge_names(b)
        link = backend.link(b.name)
        if link is None:
            out.append(f"bridge {b.name} is missing")
            continue
        if link.kind != "bridge":
            out.append(f"{b.name} is a {link.kind or 'device'}, not a bridge")
            continue
        if not link.up:
            out.append(f"bridge {b.name} is down")
        if link.stp:
            out.append(f"bridge {b.name} has STP on")
        if link.forward_delay:
            out.append(f"bridge {b.name} has forward delay {link.forward_delay}")
        if b.mtu is not None and link.mtu != b.mtu:
            out.append(f"bridge {b.name} has mtu {link.mtu}, expected {b.mtu}")
        if b.mac is not None and link.mac != b.mac:
            out.append(f"bridge {b.name} has mac {link.mac}, expected {b.mac}")
        if not backend.ipv6_off(b.name):
            out.append(f"bridge {b.name} has IPv6 on")
        out += _address_drift(backend, b)
        if b.segment is not None:
            out += _segment_drift(backend, b, b.segment)
    return out


def _address_drift(backend: LinkBackend, b: Bridge) -> list[str]:
    out = []
    desired = list(dict.fromkeys(canonical_cidr(a) for a in b.addresses))
    have = backend.addresses(b.name)
    cidrs = {a.cidr for a in have}
    out += [f"bridge {b.name} lacks address {d}" for d in desired if d not in cidrs]
    if not (b.segment is not None and b.segment.kind == "nic"):
        out += [f"bridge {b.name} carries foreign address {a.cidr}" for a in have if a.cidr not in desired]
    for net in dict.fromkeys(subnet_of(d) for d in desired):
        want = [d for d in desired if subnet_of(d) == net]
        if not subnet_in_order([a for a in have if subnet_of(a.cidr) == net], want):
            out.append(f"bridge {b.name}: addresses of {net} are not in order {', '.join(want)}")
    return out


def _segment_drift(backend: LinkBackend, b: Bridge, seg: Segment) -> list[str]:
    dev = backend.link(seg.name)
    if dev is None:
        return [f"{seg.kind} {seg.name} of bridge {b.name} is missing"]
    out = []
    if seg.kind != "nic" and (problem := segment_mismatch(seg, dev)):
        out.append(problem)
    if dev.master != b.name:
        where = f"enslaved to {dev.master}" if dev.master else "not enslaved"
        out.append(f"{seg.name} is {where}, expected {b.name}")
    if not dev.up:
        out.append(f"{seg.name} is down")
    if seg.kind != "nic" and not backend.ipv6_off(seg.name):
        out.append(f"{seg.name} has IPv6 on")
    if seg.kind == "nic":
        out += [
            f"{seg.name} still carries {a.cidr} (belongs on {b.name})" for a in backend.addresses(seg.name)
        ]
    if seg.kind == "vxlan":
        want = [r for r in seg.remotes if r != seg.local]
        have = backend.fdb_remotes(seg.name)
        out += [f"{seg.name} lacks flood remote {r}" for r in want if r not in have]
        out += [f"{seg.name} floods to stale remote {r}" for r in have if r not in want]
    return out
