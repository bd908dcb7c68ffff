"""Make the host's bridges, their segments and addresses match the desired ``Bridge`` list.

Level-triggered: every function reads the backend, changes only what differs and returns
what it changed (an empty list means the host already matched). Only the bridges we are
given and their segment devices are touched; a "nic" bridge keeps addresses it carries
beyond the desired ones, because those are the host's own (moved there from the NIC).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from novanet.domain.errors import InvalidInput
from novanet.domain.names import interface_name
from novanet.host.model import Bridge, Segment
from novanet.host.netlink.base import (
    Address,
    KernelFeatureMissing,
    Link,
    LinkBackend,
    LinkError,
    NamespaceNotFound,
    ObjectExists,
    ObjectNotFound,
    Route,
    canonical_cidr,
    existing,
    ipv4,
    subnet_of,
    undo_steps,
)
from novanet.host.netlink.drift import (
    SEGMENT_KINDS,
    check_bridge_names,
    drift,
    segment_mismatch,
    subnet_in_order,
)
from novanet.host.netlink.fake import FakeLinks
from novanet.host.netlink.pyroute import PyrouteLinks

__all__ = [
    "Address",
    "FakeLinks",
    "KernelFeatureMissing",
    "Link",
    "LinkBackend",
    "LinkError",
    "NamespaceNotFound",
    "ObjectExists",
    "ObjectNotFound",
    "PyrouteLinks",
    "Route",
    "arping_command",
    "drift",
    "enable_forwarding",
    "ensure_bridges",
    "gratuitous_arp",
    "ipv6_off",
    "remove_bridges",
]


# -- ensure ------------------------------------------------------------------------------
def ensure_bridges(backend: LinkBackend, bridges: Sequence[Bridge]) -> list[str]:
    """Create or repair each bridge, its segment and its addresses; return the changes."""
    for b in bridges:
        check_bridge_names(b)
    changes: list[str] = []
    for b in bridges:
        changes += _ensure_bridge(backend, b)
    return changes


def _ensure_bridge(backend: LinkBackend, b: Bridge) -> list[str]:
    changes: list[str] = []
    link = backend.link(b.name)
    if link is None:
        backend.add_bridge(b.name)
        changes.append(f"created bridge {b.name}")
    elif link.kind != "bridge":
        raise LinkError(f"{b.name} exists and is a {link.kind or 'device'}, not a bridge: not touching it")
    elif link.stp or link.forward_delay:
        backend.set_bridge_options(b.name, stp=False, forward_delay=0)
        changes.append(f"set STP off, forward delay 0 on {b.name}")
    link = existing(backend, b.name)
    if b.mac is not None and link.mac != b.mac:
        # Set once, the bridge keeps it whatever ports come and go (otherwise the kernel
        # gives it the lowest MAC of its ports, and unplugging that port changes the
        # gateway MAC under every guest).
        backend.set_mac(b.name, b.mac)
        changes.append(f"set mac {b.mac} on {b.name}")
    changes += ipv6_off(backend, b.name)  # before it goes up: no link-local, no RA
    if b.segment is not None:
        changes += _ensure_segment(backend, b, b.segment)
    link = existing(backend, b.name)
    if b.mtu is not None and link.mtu != b.mtu:
        backend.set_mtu(b.name, b.mtu)
        changes.append(f"set mtu {b.mtu} on {b.name}")
    if not link.up:
        backend.set_up(b.name)
        changes.append(f"set {b.name} up")
    keep_foreign = b.segment is not None and b.segment.kind == "nic"
    changes += _converge_addresses(backend, b.name, b.addresses, keep_foreign=keep_foreign)
    if b.segment is not None and b.segment.kind == "nic":
        changes += _move_nic_addresses(backend, b.segment.name, b.name)
    return changes


def _ensure_segment(backend: LinkBackend, b: Bridge, seg: Segment) -> list[str]:
    changes: list[str] = []
    dev = backend.link(seg.name)
    if seg.kind == "nic":
        if dev is None:
            raise ObjectNotFound(f"interface {seg.name} for bridge {b.name} not found")
    else:
        changes += _ensure_virtual_segment(backend, b, seg, dev)
        dev = existing(backend, seg.name)
        if b.mtu is not None and dev.mtu != b.mtu:
            backend.set_mtu(seg.name, b.mtu)
            changes.append(f"set mtu {b.mtu} on {seg.name}")
    if seg.kind != "nic":  # ours; the NIC is the operator's
        changes += ipv6_off(backend, seg.name)
    if dev.master != b.name:
        backend.set_master(seg.name, b.name)
        changes.append(f"enslaved {seg.name} to {b.name}")
    if not dev.up:
        backend.set_up(seg.name)
        changes.append(f"set {seg.name} up")
    if seg.kind == "vxlan":
        changes += _converge_fdb(backend, seg)
    return changes


def _ensure_virtual_segment(backend: LinkBackend, b: Bridge, seg: Segment, dev: Link | None) -> list[str]:
    changes: list[str] = []
    if seg.ident is None:
        raise LinkError(f"{seg.kind} segment {seg.name} of {b.name} has no id")
    if dev is not None:
        problem = segment_mismatch(seg, dev)
        if problem is None:
            return changes
        if dev.kind != SEGMENT_KINDS[seg.kind]:
            raise LinkError(problem + ": not touching it")
        # VNI, port and lower device of an existing device cannot be changed: recreate it.
        backend.delete_link(seg.name)
        changes.append(f"deleted {seg.name} ({problem})")
    if seg.kind == "vxlan":
        backend.add_vxlan(seg.name, vni=seg.ident, parent=seg.parent, local=seg.local, port=seg.port)
    else:
        if seg.parent is None:
            raise LinkError(f"vlan segment {seg.name} of {b.name} has no parent interface")
        backend.add_vlan(seg.name, parent=seg.parent, vlan_id=seg.ident)
    changes.append(f"created {seg.kind} {seg.name} (id {seg.ident})")
    return changes


def _converge_fdb(backend: LinkBackend, seg: Segment) -> list[str]:
    changes: list[str] = []
    want = [ipv4(r) for r in seg.remotes if r != seg.local]
    have = backend.fdb_remotes(seg.name)
    for r in want:
        if r not in have:
            backend.add_fdb_remote(seg.name, r)
            changes.append(f"added flood remote {r} on {seg.name}")
    for r in have:
        if r not in want:
            try:
                backend.delete_fdb_remote(seg.name, r)
            except ObjectNotFound:
                continue
            changes.append(f"removed flood remote {r} from {seg.name}")
    return changes


def _converge_addresses(
    backend: LinkBackend, name: str, wanted: Iterable[str], *, keep_foreign: bool
) -> list[str]:
    changes: list[str] = []
    desired = list(dict.fromkeys(canonical_cidr(a) for a in wanted))
    if not keep_foreign:
        for a in reversed(backend.addresses(name)):
            if a.cidr not in desired:
                try:
                    backend.delete_address(name, a.cidr)
                except ObjectNotFound:
                    continue  # a secondary that went with its primary
                changes.append(f"removed foreign address {a.cidr} from {name}")
    for net in dict.fromkeys(subnet_of(d) for d in desired):
        want = [d for d in desired if subnet_of(d) == net]
        have = [a for a in backend.addresses(name) if subnet_of(a.cidr) == net]
        if not subnet_in_order(have, want):
            # Rebuild the subnet: delete secondaries first so nothing cascades, re-add the
            # wanted ones in order and then whatever else was kept; restore routes the
            # kernel dropped meanwhile.
            routes = backend.routes(name)
            for a in reversed(have):
                backend.delete_address(name, a.cidr)
            for cidr in want + [a.cidr for a in have if a.cidr not in want]:
                backend.add_address(name, cidr)
            for r in routes:
                if r not in backend.routes(name):
                    backend.add_route(name, r)
            changes.append(f"reordered addresses of {net} on {name}: {', '.join(want)} first")
            continue
        present = {a.cidr for a in have}
        for cidr in want:
            if cidr not in present:
                backend.add_address(name, cidr)
                changes.append(f"added {cidr} to {name}")
    return changes


def _move_nic_addresses(backend: LinkBackend, nic: str, bridge: str) -> list[str]:
    """Move the NIC's IPv4 addresses and its routes onto the bridge, as nova did, so the
    host stays reachable through the bridge; undone if any step fails."""
    addrs = backend.addresses(nic)
    if not addrs:
        return []
    routes = backend.routes(nic)
    on_bridge = {a.cidr for a in backend.addresses(bridge)}
    undo: list[Callable[[], None]] = []
    try:
        # The same address may sit on both devices for a moment: no gap in reachability.
        for a in addrs:
            if a.cidr not in on_bridge:
                backend.add_address(bridge, a.cidr)
                undo.append(partial(backend.delete_address, bridge, a.cidr))
        for r in routes:  # a route is unique per table whatever its device
            backend.delete_route(nic, r)
            undo.append(partial(backend.add_route, nic, r))
        for a in reversed(addrs):
            try:
                backend.delete_address(nic, a.cidr)
            except ObjectNotFound:
                continue
            undo.append(partial(backend.add_address, nic, a.cidr))
        for r in routes:
            backend.add_route(bridge, r)
            undo.append(partial(backend.delete_route, bridge, r))
    except LinkError:
        undo_steps(undo)
        raise
    moved = ", ".join(a.cidr for a in addrs)
    changes = [f"moved {moved} from {nic} to {bridge}"]
    changes += [f"moved route {r.dst} via {r.gateway or 'link'} from {nic} to {bridge}" for r in routes]
    return changes


def ipv6_off(backend: LinkBackend, name: str) -> list[str]:
    """Turn IPv6 off on a link novanet owns (bridge, segment, instance port)."""
    if backend.ipv6_off(name):
        return []
    backend.disable_ipv6(name)
    return [f"disabled IPv6 on {name}"]


# -- remove ------------------------------------------------------------------------------
def remove_bridges(backend: LinkBackend, names: Iterable[str]) -> list[str]:
    """Delete bridges no longer desired with their vxlan/vlan devices; other ports (a NIC,
    instance taps) are only released. A bridge already gone is success."""
    names = [interface_name(n, "bridge") for n in names]
    changes: list[str] = []
    for name in names:
        link = backend.link(name)
        if link is None:
            continue
        if link.kind != "bridge":
            raise LinkError(f"{name} is a {link.kind or 'device'}, not a bridge: not removing it")
        for port in backend.links():
            if port.master != name:
                continue
            try:
                if port.kind in SEGMENT_KINDS.values():
                    backend.delete_link(port.name)
                    changes.append(f"deleted {port.kind} {port.name}")
                else:
                    backend.set_master(port.name, None)
                    changes.append(f"released {port.name} from {name}")
            except ObjectNotFound:
                continue
        try:
            backend.delete_link(name)
        except ObjectNotFound:
            continue
        changes.append(f"deleted bridge {name}")
    return changes


# -- forwarding, ARP -------------------------------------------------------------------------
def enable_forwarding(path: Path = Path("/proc/sys/net/ipv4/ip_forward")) -> bool:
    """Set ip_forward=1 in the namespace the process runs in; True when it changed."""
    if path.read_text().strip() == "1":
        return False
    path.write_text("1\n")
    return True


def arping_command(interface: str, address: str, count: int = 3) -> list[str]:
    """Argument list for unsolicited (gratuitous) ARP: iputils arping or busybox's."""
    interface_name(interface)
    ip = ipv4(address)
    if not 1 <= count <= 100:
        raise InvalidInput(f"invalid ARP count {count}: use 1-100")
    args = ["-U", "-c", str(count), "-I", interface, ip]
    if exe := shutil.which("arping"):
        return [exe, *args]
    if exe := shutil.which("busybox"):
        return [exe, "arping", *args]
    raise LinkError("no arping found: install iputils-arping or busybox")


def gratuitous_arp(interface: str, address: str, count: int = 3, *, timeout: float = 30) -> None:
    """Announce ``address`` on ``interface`` (only when send_arp_for_ha is set)."""
    argv = arping_command(interface, address, count)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise LinkError(f"arping {address} on {interface} failed: {res.stderr.strip() or res.returncode}")
