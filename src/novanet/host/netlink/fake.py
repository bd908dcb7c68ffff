"""An in-memory ``LinkBackend`` that behaves like the kernel where our code depends on it.

Modelled (each seen on the real kernel): EEXIST/ENODEV style errors; a link kind the
kernel lacks (``features``) fails like a missing module; IPv4 primary/secondary addresses
per subnet, a new primary placed after the last primary and a secondary at the end, and
deleting a primary also deleting its secondaries (promote_secondaries off); a route needs
its device up and its gateway on a connected subnet, and duplicates clash whatever the
device; a device's routes go with its last address, when it goes down or away; a bridge
without a user-set MTU follows its smallest port; a VXLAN's MTU is capped by its parent;
deleting a lower device deletes its vlan/vxlan devices; deleting one veth end deletes
the other, in whichever namespace; a netns move renames, downs and flushes the device;
deleting an absent remote of an existing all-zeros FDB entry succeeds; a bridge whose MAC
was never set takes the lowest MAC of its ports, one set by the user sticks; IPv6 is on
for every new link until turned off; novanet's local routes (floating IPs) stay when their
device goes down and go with it when it is deleted or moved.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from novanet.domain.names import interface_name
from novanet.host.netlink.base import (
    Address,
    KernelFeatureMissing,
    Link,
    LinkError,
    NamespaceNotFound,
    ObjectExists,
    ObjectNotFound,
    Route,
    canonical_cidr,
    ipv4,
    subnet_of,
)

ALL_FEATURES = frozenset({"bridge", "vxlan", "8021q", "veth", "tun"})
_VXLAN_OVERHEAD = 50


@dataclass
class _Dev:
    link: Link
    addresses: list[Address] = field(default_factory=list)
    fdb: list[str] = field(default_factory=list)
    mtu_set: bool = False  # bridge: an MTU set by the user sticks
    mac_set: bool = False  # bridge: a MAC set by the user sticks
    ipv6: bool = True
    peer: tuple[FakeLinks, str] | None = None  # veth


class FakeLinks:
    """One network namespace; ``namespaces`` is shared by all namespaces of one fake host."""

    def __init__(
        self,
        features: frozenset[str] = ALL_FEATURES,
        *,
        name: str = "",
        namespaces: dict[str, FakeLinks] | None = None,
        counter: itertools.count[int] | None = None,
    ) -> None:
        self.name = name
        self.features = features
        self.namespaces = namespaces if namespaces is not None else {}
        self._counter = counter if counter is not None else itertools.count(2)
        self._devs: dict[str, _Dev] = {}
        self._routes: list[tuple[str, Route]] = []
        self._local: dict[str, set[str]] = {}  # device -> addresses of our local routes
        self.add_nic("lo", mtu=65536)

    # -- test helpers ------------------------------------------------------------------
    def add_namespace(self, name: str) -> FakeLinks:
        """A sibling namespace (``ip netns add``) reachable through ``in_netns``."""
        ns = FakeLinks(self.features, name=name, namespaces=self.namespaces, counter=self._counter)
        self.namespaces[name] = ns
        return ns

    def add_nic(self, name: str, *, mtu: int = 1500, up: bool = True) -> None:
        """A device without a kind, as a physical NIC."""
        self._new(name, None, mtu=mtu, up=up)

    def dump(self) -> dict[str, Any]:
        """Plain data: links (with addresses and FDB remotes) and routes."""
        links = {}
        for name, d in sorted(self._devs.items()):
            entry = {k: v for k, v in vars(d.link).items() if v is not None and k != "name"}
            entry.pop("index")
            entry["addresses"] = [a.cidr + ("" if a.primary else " secondary") for a in d.addresses]
            if d.link.kind == "vxlan":
                entry["fdb"] = list(d.fdb)
            if not d.ipv6:
                entry["ipv6"] = False
            links[name] = entry
        routes = [
            {"dev": dev, **{k: v for k, v in vars(r).items() if v is not None}} for dev, r in self._routes
        ]
        local = {dev: sorted(a, key=IPv4Address) for dev, a in sorted(self._local.items()) if a}
        return {"links": links, "routes": routes, **({"local": local} if local else {})}

    # -- internals ---------------------------------------------------------------------
    def _new(self, name: str, kind: str | None, *, mtu: int = 1500, up: bool = False, **attrs: Any) -> _Dev:
        interface_name(name)
        if name in self._devs:
            raise ObjectExists(f"interface {name} exists")
        index = next(self._counter)
        mac = f"02:00:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
        dev = _Dev(Link(name=name, index=index, kind=kind, up=up, mtu=mtu, mac=mac, **attrs))
        self._devs[name] = dev
        return dev

    def _dev(self, name: str) -> _Dev:
        try:
            return self._devs[interface_name(name)]
        except KeyError:
            raise ObjectNotFound(f"interface {name} not found") from None

    def _need(self, feature: str) -> None:
        if feature not in self.features:
            raise KernelFeatureMissing(feature, "Unknown device type")

    def _set(self, name: str, **changes: Any) -> None:
        d = self._dev(name)
        d.link = replace(d.link, **changes)

    def _follow_ports(self, bridge: str) -> None:
        d = self._devs.get(bridge)
        if d is None or d.link.kind != "bridge":
            return
        ports = [p.link for p in self._devs.values() if p.link.master == bridge]
        if not d.mtu_set:
            self._set(bridge, mtu=min(p.mtu for p in ports) if ports else 1500)
        if not d.mac_set and ports:
            self._set(bridge, mac=min(p.mac for p in ports))

    def _flush_routes(self, name: str) -> None:
        self._routes = [(dev, r) for dev, r in self._routes if dev != name]

    def _gone(self, name: str) -> None:
        """A device deleted or moved away takes every route through it along."""
        self._flush_routes(name)
        self._local.pop(name, None)

    # -- LinkBackend: reading ----------------------------------------------------------
    def links(self) -> list[Link]:
        return [d.link for d in self._devs.values()]

    def link(self, name: str) -> Link | None:
        d = self._devs.get(interface_name(name))
        return d.link if d else None

    def addresses(self, name: str) -> list[Address]:
        return list(self._dev(name).addresses)

    def routes(self, name: str) -> list[Route]:
        self._dev(name)
        return [r for dev, r in self._routes if dev == name]

    def fdb_remotes(self, name: str) -> list[str]:
        return list(self._dev(name).fdb)

    def local_routes(self) -> dict[str, set[str]]:
        return {dev: set(a) for dev, a in self._local.items() if a}

    def set_local_routes(self, name: str, add: list[str], delete: list[str]) -> None:
        self._dev(name)
        mine = self._local.setdefault(name, set())
        mine -= {ipv4(a) for a in delete}
        mine |= {ipv4(a) for a in add}

    # -- LinkBackend: links ------------------------------------------------------------
    def add_bridge(self, name: str) -> None:
        self._need("bridge")
        self._new(name, "bridge", stp=False, forward_delay=0)

    def set_bridge_options(self, name: str, *, stp: bool, forward_delay: int) -> None:
        if self._dev(name).link.kind != "bridge":
            raise LinkError(f"{name} is not a bridge")
        self._set(name, stp=stp, forward_delay=forward_delay)

    def add_vxlan(self, name: str, *, vni: int, parent: str | None, local: str | None, port: int) -> None:
        self._need("vxlan")
        mtu = self._dev(parent).link.mtu - _VXLAN_OVERHEAD if parent else 1500 - _VXLAN_OVERHEAD
        self._new(name, "vxlan", mtu=mtu, vni=vni, parent=parent, local=local, port=port, learning=False)

    def add_vlan(self, name: str, *, parent: str, vlan_id: int) -> None:
        lower = self._dev(parent)
        self._need("8021q")
        self._new(name, "vlan", mtu=lower.link.mtu, vlan_id=vlan_id, parent=parent)

    def add_veth(self, name: str, peer: str, *, mtu: int | None = None) -> None:
        self._need("veth")
        if peer in self._devs:
            raise ObjectExists(f"interface {peer} exists")
        a = self._new(name, "veth", mtu=mtu or 1500)
        b = self._new(peer, "veth", mtu=mtu or 1500)
        a.peer, b.peer = (self, peer), (self, name)

    def add_tap(self, name: str) -> None:
        self._need("tun")
        self._new(name, "tun")

    def set_up(self, name: str) -> None:
        self._set(name, up=True)

    def set_mtu(self, name: str, mtu: int) -> None:
        d = self._dev(name)
        if d.link.kind == "vxlan" and d.link.parent:
            cap = self._dev(d.link.parent).link.mtu - _VXLAN_OVERHEAD
            if mtu > cap:
                raise LinkError(f"set mtu {mtu} on {name}: Invalid argument (max {cap})")
        if d.link.kind == "bridge":
            d.mtu_set = True
        self._set(name, mtu=mtu)
        if d.link.master:
            self._follow_ports(d.link.master)

    def set_mac(self, name: str, mac: str) -> None:
        d = self._dev(name)
        if d.link.kind == "bridge":
            d.mac_set = True
        self._set(name, mac=mac.lower())
        if d.link.master:
            self._follow_ports(d.link.master)

    def ipv6_off(self, name: str) -> bool:
        return not self._dev(name).ipv6

    def disable_ipv6(self, name: str) -> None:
        self._dev(name).ipv6 = False

    def set_master(self, name: str, master: str | None) -> None:
        d = self._dev(name)
        old = d.link.master
        if master is not None:
            m = self._dev(master)
            if m.link.kind != "bridge" or master == name:
                raise LinkError(f"set master of {name} to {master}: Operation not supported")
        self._set(name, master=master)
        for bridge in {old, master} - {None}:
            self._follow_ports(str(bridge))

    def move_to_netns(self, name: str, netns: str, new_name: str) -> None:
        target = self.namespaces.get(netns)
        if target is None:
            raise NamespaceNotFound(f"network namespace {netns} does not exist")
        interface_name(new_name)
        d = self._dev(name)
        if new_name in target._devs:
            raise ObjectExists(f"interface {new_name} exists in {netns}")
        self.set_master(name, None)
        self._gone(name)
        del self._devs[name]
        d.link = replace(d.link, name=new_name, up=False)
        d.addresses = []
        target._devs[new_name] = d
        if d.peer is not None:
            peer_ns, peer_name = d.peer
            peer_ns._devs[peer_name].peer = (target, new_name)

    def in_netns(self, netns: str) -> FakeLinks:
        target = self.namespaces.get(netns)
        if target is None:
            raise NamespaceNotFound(f"network namespace {netns} does not exist")
        return target

    def delete_link(self, name: str) -> None:
        d = self._dev(name)
        del self._devs[name]
        self._gone(name)
        for other in list(self._devs.values()):
            if other.link.master == name:
                other.link = replace(other.link, master=None)
            if other.link.parent == name and other.link.name in self._devs:
                self.delete_link(other.link.name)
        if d.link.master:
            self._follow_ports(d.link.master)
        if d.peer is not None:
            peer_ns, peer_name = d.peer
            if peer_name in peer_ns._devs:
                peer_ns._devs[peer_name].peer = None
                peer_ns.delete_link(peer_name)

    def close(self) -> None:
        pass

    # -- LinkBackend: addresses, routes, fdb ---------------------------------------------
    def add_address(self, name: str, cidr: str) -> None:
        d = self._dev(name)
        cidr = canonical_cidr(cidr)
        if any(a.cidr == cidr for a in d.addresses):
            raise ObjectExists(f"add {cidr} to {name}: File exists")
        net = subnet_of(cidr)
        if any(subnet_of(a.cidr) == net for a in d.addresses):
            d.addresses.append(Address(cidr, primary=False))
            return
        last_primary = max((i for i, a in enumerate(d.addresses) if a.primary), default=-1)
        d.addresses.insert(last_primary + 1, Address(cidr, primary=True))

    def set_host_addresses(self, name: str, add: list[str], delete: list[str]) -> None:
        have = {a.cidr for a in self._dev(name).addresses}
        for cidr in delete:
            if canonical_cidr(cidr) in have:
                self.delete_address(name, cidr)
        for cidr in add:
            if canonical_cidr(cidr) not in have:
                self.add_address(name, cidr)

    def delete_address(self, name: str, cidr: str) -> None:
        d = self._dev(name)
        cidr = canonical_cidr(cidr)
        victim = next((a for a in d.addresses if a.cidr == cidr), None)
        if victim is None:
            raise ObjectNotFound(f"delete {cidr} from {name}: Cannot assign requested address")
        net = subnet_of(cidr)
        d.addresses = [
            a for a in d.addresses if a is not victim and not (victim.primary and subnet_of(a.cidr) == net)
        ]
        if not d.addresses:
            self._flush_routes(name)

    def _key(self, r: Route) -> tuple[str, int | None]:
        return (r.dst, r.metric)

    def add_route(self, name: str, route: Route) -> None:
        d = self._dev(name)
        if not d.link.up:
            raise LinkError(f"add route {route.dst} dev {name}: Network is down")
        if route.gateway is not None:
            gw = IPv4Address(route.gateway)
            if not any(gw in IPv4Interface(a.cidr).network for a in d.addresses):
                raise LinkError(f"add route {route.dst} via {gw} dev {name}: Network is unreachable")
        if any(self._key(r) == self._key(route) for _, r in self._routes):
            raise ObjectExists(f"add route {route.dst}: File exists")
        self._routes.append((name, route))

    def delete_route(self, name: str, route: Route) -> None:
        self._dev(name)
        if (name, route) not in self._routes:
            raise ObjectNotFound(f"delete route {route.dst} dev {name}: No such process")
        self._routes.remove((name, route))

    def add_fdb_remote(self, name: str, dst: str) -> None:
        d = self._dev(name)
        if d.link.kind != "vxlan":
            raise LinkError(f"append fdb on {name}: Operation not supported")
        if dst not in d.fdb:  # the kernel accepts an existing remote silently
            d.fdb.append(dst)

    def delete_fdb_remote(self, name: str, dst: str) -> None:
        d = self._dev(name)
        if not d.fdb:
            raise ObjectNotFound(f"delete fdb dst {dst} on {name}: No such file or directory")
        if dst in d.fdb:
            d.fdb.remove(dst)
