"""The desired state of one host: a pure function of a database snapshot and the host.

Single-host and multi-host are the same code: which host is gateway, DHCP server and NAT
of a network is data (network.host, or each instance's host when multi_host).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from novanet.config import Config
from novanet.domain.models import Network
from novanet.host.model import (
    Bridge,
    DhcpHost,
    DhcpServer,
    FloatingNat,
    HostState,
    NatState,
    Segment,
    VifFilter,
    VpnAppliance,
    VpnForward,
    VxlanGuard,
)
from novanet.host.screen import screen


@dataclass(frozen=True)
class SnapVif:
    """A VIF with what the host side needs of its instance and fixed IPs."""

    uuid: str
    mac: str
    network_id: int
    instance_uuid: str
    instance_host: str
    hostname: str
    addresses: tuple[str, ...]

    @property
    def devname(self) -> str:
        """The host-side device name, as nova named taps: tap + 11 characters of the uuid."""
        return ("tap" + self.uuid)[:14]


@dataclass(frozen=True)
class SnapFloating:
    address: str
    fixed_address: str
    interface: str


@dataclass
class Snapshot:
    """What the database says, restricted to what one host needs to know."""

    networks: dict[int, Network] = field(default_factory=dict)
    vifs: dict[str, SnapVif] = field(default_factory=dict)  # by VIF uuid
    # (network id, host) -> that host's own gateway/DHCP address in a multi-host network
    host_addresses: dict[tuple[int, str], str] = field(default_factory=dict)
    floating: dict[str, SnapFloating] = field(default_factory=dict)  # NATed on this host
    releases: tuple[tuple[int, str, str], ...] = ()  # (network id, address, mac)
    underlay: dict[str, str] = field(default_factory=dict)  # host name -> underlay address
    # Every floating IP and pool interface in the cloud: a full sync unbinds stale /32s of
    # these (and only these) from this host's interfaces.
    floating_addresses: frozenset[str] = frozenset()
    floating_interfaces: frozenset[str] = frozenset()
    # network id -> every host with an instance on it (cloud-wide; for VXLAN peers)
    network_hosts: dict[int, set[str]] = field(default_factory=dict)
    # network id -> its cloudpipe clients' range, for the VLAN networks this host serves
    # whose project's VPN is wanted (`vpn create`)
    vpn_pools: dict[int, tuple[str, str]] = field(default_factory=dict)


def _prefix(net: Network) -> int:
    return IPv4Network(net.cidr).prefixlen


def _hosts_of(snap: Snapshot) -> dict[int, set[str]]:
    """Every host that carries each network: its instances' hosts, its network host and
    the hosts holding one of its addresses."""
    out: dict[int, set[str]] = defaultdict(set)
    for net_id, hosts in snap.network_hosts.items():
        out[net_id].update(hosts)
    for v in snap.vifs.values():
        out[v.network_id].add(v.instance_host)
    for net_id, host in snap.host_addresses:
        out[net_id].add(host)
    for net in snap.networks.values():
        if net.host and not net.multi_host:
            out[net.id].add(net.host)
    return out


def gateway_address(net: Network, snap: Snapshot, host: str) -> str | None:
    """The address ``host`` serves ``net`` on (gateway and DHCP), or None if it does not."""
    if net.multi_host:
        return snap.host_addresses.get((net.id, host))
    return net.gateway if net.host == host else None


def _segment(net: Network, cfg: Config, host: str, peers: Iterable[str], snap: Snapshot) -> Segment | None:
    if net.vlan is not None:
        if cfg.vlan_segmentation == "vxlan":
            if not cfg.vxlan_interface:
                return None
            remotes = tuple(sorted({snap.underlay[p] for p in peers if p != host and p in snap.underlay}))
            local = snap.underlay.get(host) or cfg.effective_vxlan_local_ip
            return Segment(
                "vxlan", f"vx{net.vlan}", cfg.vxlan_interface, net.vlan, local, remotes, cfg.vxlan_port
            )
        parent = net.bridge_interface or cfg.vlan_interface
        if not parent:
            # A single host with no VLAN interface: nothing leaves the host, the bridge suffices.
            return None
        return Segment("vlan", f"vlan{net.vlan}", parent, net.vlan)
    nic = cfg.flat_interface or net.bridge_interface
    return Segment("nic", nic) if nic else None


def _dns_servers(net: Network, cfg: Config) -> tuple[str, ...]:
    """The DNS servers guests are handed (DHCP option 6).

    The original's dnsmasq answered DNS itself and forwarded to ``dns_server`` (plus the
    network's dns1/dns2 with ``use_network_dns_servers``). Here dnsmasq serves DHCP only,
    so guests are handed those upstream servers directly; with no ``dns_server``, the
    network's own dns1/dns2, as before."""
    own = tuple(d for d in (net.dns1, net.dns2) if d)
    if not cfg.dns_server:
        return own
    chosen = list(cfg.dns_server) + (list(own) if cfg.use_network_dns_servers else [])
    return tuple(dict.fromkeys(chosen))


def bridge_mac(host: str, bridge: str) -> str:
    """A fixed, locally administered unicast MAC for ``bridge`` on ``host``: the same on
    every sync, different on every host (hosts share the segment, and a bridge drops
    frames carrying its own address as source)."""
    digest = hashlib.sha256(f"novanet-bridge/{host}/{bridge}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def appliance_port(host: str, network_uuid: str) -> str:
    """The host-side port of a VPN appliance: stable, unique per host and network."""
    return "nvpn" + hashlib.sha256(f"novanet-vpn/{host}/{network_uuid}".encode()).hexdigest()[:10]


def _appliance(
    net: Network, snap: Snapshot, host: str, cfg: Config, vpn_here: bool, gw: str
) -> VpnAppliance | None:
    """The VPN appliance of ``net`` if this host runs it: the network host (single-host)
    or the host whose vpn_ip is the network's VPN address (multi-host). Its default route
    is ``gw``, this host's own address in the network (where the DNAT is undone)."""
    pool = snap.vpn_pools.get(net.id)
    if pool is None or not cfg.vpn_auto_start or net.vlan is None or not net.bridge:
        return None
    if net.project_id is None or net.vpn_private_address is None:
        return None
    if (net.multi_host and not vpn_here) or (not net.multi_host and net.host != host):
        return None
    port = appliance_port(host, net.uuid)
    mac = bridge_mac(host, "vpn-" + net.uuid)
    return VpnAppliance(
        net.uuid, net.project_id, net.bridge, port, mac, net.cidr, net.vpn_private_address,
        gw, pool[0], pool[1],
    )  # fmt: skip


def _vxlan_guard(snap: Snapshot, cfg: Config) -> VxlanGuard | None:
    if cfg.vlan_segmentation != "vxlan" or not cfg.vxlan_interface:
        return None
    # A malformed underlay address (an untrusted row) is left out, never fatal: its host
    # simply cannot reach this one over VXLAN.
    peers = sorted({a for a in snap.underlay.values() if _is_ipv4(a)}, key=lambda a: IPv4Address(a).packed)
    return VxlanGuard(cfg.vxlan_interface, cfg.vxlan_port, tuple(peers))


def _is_ipv4(value: str) -> bool:
    try:
        IPv4Address(value)
    except ValueError:
        return False
    return True


def desired_state(snap: Snapshot, host: str, cfg: Config) -> HostState:
    """Bridges, DHCP servers, NAT and VIF filters ``host`` must carry (rows with malformed
    values left out and listed in ``rejected``)."""
    snap, rejected = screen(snap, host, cfg.flat_network_bridge)
    hosts_of = _hosts_of(snap)
    local_vifs = [v for v in snap.vifs.values() if v.instance_host == host]
    local_nets = {v.network_id for v in local_vifs}

    bridge_addrs: dict[str, list[str]] = defaultdict(list)
    bridge_segment: dict[str, Segment | None] = {}
    dhcp: list[DhcpServer] = []
    vpn: list[VpnForward] = []
    appliances: list[VpnAppliance] = []
    snat: list[str] = []
    for net in sorted(snap.networks.values(), key=lambda n: n.id):
        gw = gateway_address(net, snap, host)
        vpn_here = net.vpn_public_address is not None and net.vpn_public_address == cfg.effective_vpn_ip
        # As the original: only a multi-host gateway goes with its host's last instance,
        # and not on the host that forwards the network's VPN.
        if (
            gw is not None
            and cfg.teardown_unused_network_gateway
            and net.multi_host
            and not vpn_here
            and net.id not in local_nets
        ):
            gw = None
        if gw is None and net.id not in local_nets:
            continue  # lazy: nothing of this network lands here
        bridge = net.bridge or cfg.flat_network_bridge
        if not bridge:
            continue
        seg = _segment(net, cfg, host, hosts_of.get(net.id, ()), snap)
        bridge_segment.setdefault(bridge, seg)
        if gw is None:
            bridge_addrs.setdefault(bridge, [])
            continue
        bridge_addrs[bridge].append(f"{gw}/{_prefix(net)}")
        snat.append(net.cidr)
        if net.manager != "flat":
            served = [
                v
                for v in snap.vifs.values()
                if v.network_id == net.id and (not net.multi_host or v.instance_host == host)
            ]
            dhcp.append(
                DhcpServer(
                    network_uuid=net.uuid,
                    label=net.label,
                    bridge=bridge,
                    listen_address=gw,
                    dhcp_start=net.dhcp_start or gw,
                    netmask=net.netmask,
                    router=gw,
                    dns_servers=_dns_servers(net, cfg),
                    domain=cfg.dhcp_domain,
                    lease_time=cfg.dhcp_lease_time,
                    mtu=cfg.network_device_mtu,
                    hosts=tuple(
                        sorted(
                            (DhcpHost(v.mac, v.hostname, a) for v in served for a in v.addresses),
                            key=lambda h: h.mac,
                        )
                    ),
                )
            )
        # Only the host whose vpn_ip is the network's VPN address forwards it (as the
        # original did: `address == vpn_ip`); other gateways of a multi-host network don't.
        if vpn_here and net.vpn_public_address and net.vpn_public_port and net.vpn_private_address:
            vpn.append(VpnForward(net.vpn_public_address, net.vpn_public_port, net.vpn_private_address))
        appliance = _appliance(net, snap, host, cfg, vpn_here, gw)
        if appliance is not None:
            appliances.append(appliance)

    bridges = tuple(
        Bridge(name, tuple(addrs), bridge_segment.get(name), cfg.network_device_mtu, bridge_mac(host, name))
        for name, addrs in sorted(bridge_addrs.items())
    )
    floating = tuple(
        FloatingNat(f.address, f.fixed_address, f.interface)
        for f in sorted(snap.floating.values(), key=lambda f: f.address)
    )
    nat = None
    if snat or floating:
        meta = cfg.effective_metadata_host
        no_snat = (*cfg.dmz_cidr, f"{meta}/32") if meta else tuple(cfg.dmz_cidr)
        nat = NatState(
            public_interface=cfg.public_interface,
            routing_source_ip=cfg.effective_routing_source_ip,
            snat_ranges=(cfg.fixed_range,) if cfg.fixed_range else tuple(sorted(set(snat))),
            no_snat_destinations=tuple(no_snat),
            force_snat_ranges=tuple(cfg.force_snat_range),
            metadata_host=meta or None,
            metadata_port=cfg.metadata_port,
            floating=floating,
            vpn=tuple(sorted(vpn, key=lambda x: (x.public_address, x.public_port))),
        )
    vifs = tuple(
        sorted(
            (
                VifFilter(
                    v.devname, snap.networks[v.network_id].bridge or "", v.mac, tuple(sorted(v.addresses))
                )
                for v in local_vifs
                if v.network_id in snap.networks
            ),
            key=lambda f: f.port,
        )
    )
    bridge_of = {n.id: n.bridge or "" for n in snap.networks.values()}
    releases = tuple(sorted((bridge_of.get(nid, ""), addr, mac) for nid, addr, mac in snap.releases))
    return HostState(
        host=host,
        bridges=bridges,
        dhcp=tuple(dhcp),
        nat=nat,
        vifs=vifs,
        releases=releases,
        vxlan=_vxlan_guard(snap, cfg),
        appliances=tuple(sorted(appliances, key=lambda a: a.port)),
        rejected=tuple(str(r) for r in rejected),
    )
