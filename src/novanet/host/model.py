"""What one host must carry, as plain immutable data.

``novanet.host.desired.desired_state`` builds a HostState from a database snapshot;
the realizers (netlink, nftables, dnsmasq) make the kernel match it. Every collection is
a tuple sorted by its key so two states compare equal exactly when the host would look
the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Segment:
    """The device that carries a network's layer 2 off the host, enslaved to its bridge.

    kind "vlan": an 802.1Q device ``name`` (vlan<N>) on ``parent`` with id ``ident``.
    kind "vxlan": a VXLAN device ``name`` (vx<N>) with VNI ``ident`` over the underlay
    device ``parent``, from ``local`` to each of ``remotes`` (head-end replication).
    kind "nic": an existing interface ``name`` (flat_interface/bridge_interface).
    """

    kind: str
    name: str
    parent: str | None = None
    ident: int | None = None
    local: str | None = None
    remotes: tuple[str, ...] = ()
    port: int = 4789


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge: forward delay 0, STP off, up.

    ``addresses`` are CIDR strings (``10.0.0.1/24``) put on the bridge, the DHCP/gateway
    address first. ``segment`` is enslaved to it; a "nic" segment also has its IPv4
    addresses and routes moved onto the bridge. ``mac`` is the bridge's own address (set
    once, so the kernel never replaces it with the lowest MAC of its ports: the gateway
    MAC guests cached stays valid when any port leaves).
    """

    name: str
    addresses: tuple[str, ...] = ()
    segment: Segment | None = None
    mtu: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class DhcpHost:
    """A static reservation: only this MAC gets this address."""

    mac: str
    hostname: str
    address: str


@dataclass(frozen=True)
class DhcpServer:
    """One dnsmasq for one network on this host."""

    network_uuid: str
    label: str
    bridge: str
    listen_address: str  # the DHCP server's own address on the bridge
    dhcp_start: str
    netmask: str
    router: str | None  # DHCP option 3 (None: no default route)
    dns_servers: tuple[str, ...]
    domain: str
    lease_time: int
    mtu: int | None = None
    hosts: tuple[DhcpHost, ...] = ()


@dataclass(frozen=True)
class VpnForward:
    """Cloudpipe: udp public_address:public_port -> private_address:1194."""

    public_address: str
    public_port: int
    private_address: str


@dataclass(frozen=True)
class FloatingNat:
    """A floating IP NATed to a fixed IP; the address is bound /32 on ``interface``."""

    address: str
    fixed_address: str
    interface: str


@dataclass(frozen=True)
class NatState:
    """Everything the nat table of this host carries."""

    public_interface: str
    routing_source_ip: str
    snat_ranges: tuple[str, ...] = ()  # CIDRs SNATed out public_interface
    no_snat_destinations: tuple[str, ...] = ()  # dmz_cidr, metadata_host/32
    force_snat_ranges: tuple[str, ...] = ()
    metadata_host: str | None = None
    metadata_port: int = 8775
    floating: tuple[FloatingNat, ...] = ()
    vpn: tuple[VpnForward, ...] = ()


@dataclass(frozen=True)
class VifFilter:
    """Anti-spoofing of one instance port: frames from ``port`` must carry ``mac`` and,
    for IPv4 and ARP, a source within ``addresses``.

    ``addresses`` holds plain addresses (``10.0.0.5``) and ranges (``10.8.0.0/24``): an
    appliance port, such as a cloudpipe VPN server routing its clients' range, is a
    VifFilter whose addresses include that range. Every other port of a novanet bridge
    that is not a VifFilter nor the bridge's segment is dropped.
    """

    port: str
    bridge: str
    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class VpnAppliance:
    """A project's cloudpipe VPN run by this host's agent: a network namespace plugged
    into the project's bridge through ``port`` (its MAC ``mac``), holding the project's
    ``vpn_address``, running OpenVPN in tap mode bridged to that port. Frames from the
    port may carry the appliance's own address and the clients' range
    ``pool_start``-``pool_end`` (any MAC: each client brings its own), nothing else."""

    network_uuid: str
    project: str
    bridge: str
    port: str
    mac: str
    cidr: str
    vpn_address: str
    gateway: str
    pool_start: str
    pool_end: str

    @property
    def namespace(self) -> str:
        return "nnvpn-" + self.port.removeprefix("nvpn")


@dataclass(frozen=True)
class VxlanGuard:
    """Who may send VXLAN to this host: only ``peers`` (the hosts table's underlay
    addresses), only through ``interface``, on UDP ``port``. Guests never route to the
    peers either."""

    interface: str
    port: int
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostState:
    host: str
    bridges: tuple[Bridge, ...] = ()
    dhcp: tuple[DhcpServer, ...] = ()
    nat: NatState | None = None
    vifs: tuple[VifFilter, ...] = ()
    # DHCP leases to drop now (force_dhcp_release): (bridge, address, mac)
    releases: tuple[tuple[str, str, str], ...] = field(default=())
    vxlan: VxlanGuard | None = None
    appliances: tuple[VpnAppliance, ...] = ()  # cloudpipe VPNs this host runs
    # Ports of bridges that are not novanet's (seen in the kernel by the agent): exempt
    # from the default drop of unknown bridge ports, which without the bridge-name match
    # (nft `meta ibrname`, missing in some kernels) cannot tell whose bridge a port is on.
    foreign_ports: tuple[str, ...] = ()
    # database rows left out because a value in them is malformed, one line each
    # ("network 3 (uuid): bridge name ... invalid"): reported by `agent check`
    rejected: tuple[str, ...] = ()

    @property
    def bridge_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bridges)
