"""Plugging virtual interfaces of instances into their bridge (the compute side).

Acts in the network namespace the process runs in unless given a backend. A container
instance gets a veth pair whose far end lives in its namespace; a qemu/libvirt guest a
tap. Everything is idempotent, and a half-done plug is undone before the error surfaces.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from novanet.domain.mac import normalize_mac
from novanet.domain.names import interface_name
from novanet.host.netlink.base import LinkBackend, LinkError, ObjectNotFound, existing, undo_steps
from novanet.host.netlink.pyroute import PyrouteLinks, netns_name


@contextmanager
def _backend(links: LinkBackend | None) -> Iterator[LinkBackend]:
    if links is not None:
        yield links
        return
    own = PyrouteLinks()
    try:
        yield own
    finally:
        own.close()


def _peer_name(devname: str) -> str:
    """Temporary host-side name of the guest end, stable so a crashed plug is found again."""
    return "nvp" + hashlib.sha1(devname.encode()).hexdigest()[:12]


def _check_mtu(mtu: int | None) -> None:
    if mtu is not None and not 68 <= mtu <= 65535:
        raise LinkError(f"invalid mtu {mtu}: use 68-65535")


def _attach(links: LinkBackend, devname: str, bridge: str, mtu: int | None) -> list[str]:
    changes = []
    dev = existing(links, devname)
    if mtu is not None and dev.mtu != mtu:
        links.set_mtu(devname, mtu)
        changes.append(f"set mtu {mtu} on {devname}")
    if not links.ipv6_off(devname):  # the host end carries no IPv6: novanet is IPv4-only
        links.disable_ipv6(devname)
        changes.append(f"disabled IPv6 on {devname}")
    if dev.master != bridge:
        links.set_master(devname, bridge)
        changes.append(f"enslaved {devname} to {bridge}")
    if not dev.up:
        links.set_up(devname)
        changes.append(f"set {devname} up")
    return changes


def plug_netns(
    vif_mac: str,
    devname: str,
    bridge: str,
    instance_netns: str,
    mtu: int | None = None,
    ifname_in_guest: str = "eth0",
    *,
    links: LinkBackend | None = None,
) -> list[str]:
    """veth pair: ``devname`` on ``bridge`` and up; its peer in ``instance_netns`` as
    ``ifname_in_guest`` with ``vif_mac``, ``mtu`` and up. Returns what changed."""
    mac = normalize_mac(vif_mac)
    if mac is None:
        raise LinkError(f"invalid MAC address {vif_mac!r}")
    interface_name(devname, "vif device")
    interface_name(bridge, "bridge")
    interface_name(ifname_in_guest, "guest interface")
    netns_name(instance_netns)
    _check_mtu(mtu)
    peer = _peer_name(devname)
    with _backend(links) as host:
        bridge_link = host.link(bridge)
        if bridge_link is None or bridge_link.kind != "bridge":
            raise ObjectNotFound(f"bridge {bridge} not found")
        guest = host.in_netns(instance_netns)
        try:
            return _plug_pair(host, guest, devname, peer, bridge, instance_netns, mac, mtu, ifname_in_guest)
        finally:
            if guest is not host:
                guest.close()


def _plug_pair(
    host: LinkBackend,
    guest: LinkBackend,
    devname: str,
    peer: str,
    bridge: str,
    instance_netns: str,
    mac: str,
    mtu: int | None,
    ifname: str,
) -> list[str]:
    changes: list[str] = []
    undo: list[Callable[[], None]] = []
    dev = host.link(devname)
    if dev is not None and dev.kind != "veth":
        raise LinkError(f"{devname} exists and is a {dev.kind or 'device'}, not a veth: not touching it")
    if dev is not None and host.link(peer) is None and guest.link(ifname) is None:
        host.delete_link(devname)  # its peer went elsewhere (a recreated namespace): start over
        changes.append(f"deleted orphaned {devname}")
        dev = None
    try:
        if dev is None:
            if host.link(peer) is not None:
                host.delete_link(peer)  # the leftover of an interrupted plug
            host.add_veth(devname, peer, mtu=mtu)
            undo.append(lambda: host.delete_link(devname))
            changes.append(f"created veth {devname}")
        if host.link(peer) is not None:
            host.move_to_netns(peer, instance_netns, ifname)
            changes.append(f"moved the peer of {devname} into {instance_netns} as {ifname}")
        inside = guest.link(ifname)
        if inside is None:
            raise ObjectNotFound(f"{ifname} not found in {instance_netns} (peer of {devname})")
        if inside.mac != mac:
            guest.set_mac(ifname, mac)
            changes.append(f"set mac {mac} on {ifname} in {instance_netns}")
        if mtu is not None and inside.mtu != mtu:
            guest.set_mtu(ifname, mtu)
            changes.append(f"set mtu {mtu} on {ifname} in {instance_netns}")
        if not inside.up:
            guest.set_up(ifname)
            changes.append(f"set {ifname} up in {instance_netns}")
        changes += _attach(host, devname, bridge, mtu)
    except LinkError:
        undo_steps(undo)
        raise
    return changes


def plug_tap(
    devname: str, bridge: str, mtu: int | None = None, *, links: LinkBackend | None = None
) -> list[str]:
    """Put a tap (qemu/libvirt's own, or one created here) on ``bridge``, up."""
    interface_name(devname, "vif device")
    interface_name(bridge, "bridge")
    _check_mtu(mtu)
    with _backend(links) as host:
        bridge_link = host.link(bridge)
        if bridge_link is None or bridge_link.kind != "bridge":
            raise ObjectNotFound(f"bridge {bridge} not found")
        changes = []
        dev = host.link(devname)
        if dev is None:
            host.add_tap(devname)
            changes.append(f"created tap {devname}")
        elif dev.kind != "tun":
            raise LinkError(f"{devname} exists and is a {dev.kind or 'device'}, not a tap: not touching it")
        try:
            return changes + _attach(host, devname, bridge, mtu)
        except LinkError:
            if changes:
                host.delete_link(devname)
            raise


def unplug(devname: str, *, links: LinkBackend | None = None) -> list[str]:
    """Remove the host end of a VIF (a veth's peer goes with it); already gone is success."""
    interface_name(devname, "vif device")
    with _backend(links) as host:
        dev = host.link(devname)
        if dev is None:
            return []
        if dev.kind not in ("veth", "tun"):
            raise LinkError(f"{devname} is a {dev.kind or 'device'}, not a vif: not removing it")
        try:
            host.delete_link(devname)
        except ObjectNotFound:
            return []
        return [f"deleted {devname}"]


def libvirt_xml(vif: dict[str, Any]) -> str:
    """The libvirt ``<interface type='bridge'>`` element of one network_info VIF."""
    mac = normalize_mac(str(vif["address"]))
    if mac is None:
        raise LinkError(f"invalid MAC address {vif['address']!r}")
    network = vif.get("network") or {}
    bridge = interface_name(str(network["bridge"]), "bridge")
    devname = interface_name(str(vif["devname"]), "vif device")
    mtu = vif.get("mtu") or network.get("mtu") or (network.get("meta") or {}).get("mtu")
    iface = ET.Element("interface", type="bridge")
    ET.SubElement(iface, "mac", address=mac)
    ET.SubElement(iface, "source", bridge=bridge)
    ET.SubElement(iface, "target", dev=devname)
    ET.SubElement(iface, "model", type="virtio")
    if mtu:
        _check_mtu(int(mtu))
        ET.SubElement(iface, "mtu", size=str(int(mtu)))
    ET.indent(iface)
    return ET.tostring(iface, encoding="unicode")
