"""The ``bridge novanet`` table (pure): what frames from the ports of novanet's bridges
may carry.

Every port of a novanet bridge is one of: an instance port (``@vif-ports``, checked in
``vif-ingress``), the bridge's segment (``@uplink-ports``: NIC, vlan or vxlan, trusted),
a port of a bridge that is not ours (``@foreign-ports``), or unknown and dropped. The
bridge family hook sees every bridge of the namespace and this kernel has no
``meta ibrname`` to ask which bridge a port is on, hence the explicit foreign list.
"""

from __future__ import annotations

import ipaddress
import sys

from novanet.domain.errors import InvalidInput
from novanet.host.model import HostState
from novanet.host.nft.check import ifname as _ifname
from novanet.host.nft.check import ipv4 as _ipv4
from novanet.host.nft.check import mac as _mac
from novanet.host.nft.expr import (
    ACCEPT,
    DADDR,
    SADDR,
    concat,
    counted_drop,
    eq,
    meta,
    ne,
    payload,
    raw,
    set_mark,
)
from novanet.host.nft.spec import (
    Chain,
    Json,
    Prefix,
    Rule,
    SetSpec,
    Value,
    collapse,
    network_value,
    value_text,
)

# Named counters of the bridge table, one per reason a frame is dropped.
DROP_MAC = "drop-mac-spoof"
DROP_IP = "drop-ip-spoof"
DROP_ARP = "drop-arp-spoof"
DROP_DHCP_SERVER = "drop-dhcp-server"
DROP_ETHERTYPE = "drop-ethertype"
DROP_DHCP_CHADDR = "drop-dhcp-chaddr"  # a DHCP message whose chaddr is not the port's MAC
DROP_UNKNOWN_PORT = "drop-unknown-port"  # a bridge port that is no VIF, segment or foreign port
DROP_COUNTERS = (
    DROP_MAC,
    DROP_IP,
    DROP_ARP,
    DROP_DHCP_SERVER,
    DROP_DHCP_CHADDR,
    DROP_ETHERTYPE,
    DROP_UNKNOWN_PORT,
)
# BOOTP chaddr: 28 bytes into the message, after the 8-byte UDP header (bits from @th).
_CHADDR = (8 + 28) * 8

BRIDGE_SETS = (
    SetSpec("vif-ports", ("ifname",)),
    SetSpec("vif-macs", ("ifname", "ether_addr")),
    # port . address or range: an appliance port may carry a range besides its own address
    SetSpec("vif-ips", ("ifname", "ipv4_addr"), flags=("interval",)),
    # The port's MAC as two overlapping 32-bit halves (bytes 0-3 and 2-5), in host byte
    # order: nft's JSON cannot declare a set keyed by a raw 48-bit field, but a raw 32-bit
    # field copied into the packet mark can be looked up as `ifname . mark`.
    SetSpec("vif-chaddr-hi", ("ifname", "mark")),
    SetSpec("vif-chaddr-lo", ("ifname", "mark")),
    # cloudpipe VPN appliances: the port, and what it may carry (its address, the clients' range)
    SetSpec("appliance-ports", ("ifname",)),
    SetSpec("appliance-ips", ("ifname", "ipv4_addr"), flags=("interval",)),
    SetSpec("uplink-ports", ("ifname",)),  # the segment (NIC, vlan, vxlan) of each bridge
    SetSpec("foreign-ports", ("ifname",)),  # ports of bridges that are not ours
)


def _arp_ethernet_ipv4() -> list[Json]:
    """Matches ARP for Ethernet/IPv4 only: the offsets of the ARP spoofing rules assume it."""
    return [
        eq(payload("arp", "htype"), 1),
        eq(payload("arp", "ptype"), "ip"),
        eq(payload("arp", "hlen"), 6),
        eq(payload("arp", "plen"), 4),
    ]


def bridge_chains() -> list[Chain]:
    iif = meta("iifname")
    ether_type = payload("ether", "type")
    vif = [
        Rule(
            "mac spoofing",
            [ne(concat(iif, payload("ether", "saddr")), "@vif-macs"), *counted_drop(DROP_MAC)],
        ),
        Rule(
            "arp mac spoofing",
            [ne(concat(iif, payload("arp", "saddr ether")), "@vif-macs"), *counted_drop(DROP_ARP)],
        ),
        # ARP probes (RFC 5227) announce sender 0.0.0.0 and poison no cache.
        Rule(
            "arp ip spoofing",
            [
                ne(payload("arp", "saddr ip"), "0.0.0.0"),
                ne(concat(iif, payload("arp", "saddr ip")), "@vif-ips"),
                *counted_drop(DROP_ARP),
            ],
        ),
        # Only Ethernet/IPv4 ARP is accepted: the offsets above assume it.
        Rule(
            "arp",
            [
                *_arp_ethernet_ipv4(),
                ACCEPT,
            ],
        ),
        # A DHCP server answers clients on port 68: nothing an instance sends goes there,
        # whatever its source port.
        Rule(
            "dhcp server on an instance port",
            [eq(ether_type, "ip"), eq(payload("udp", "sport"), 67), *counted_drop(DROP_DHCP_SERVER)],
        ),
        Rule(
            "dhcp to a client port from an instance port",
            [eq(ether_type, "ip"), eq(payload("udp", "dport"), 68), *counted_drop(DROP_DHCP_SERVER)],
        ),
        # A DHCP message carries the client's MAC in chaddr, and dnsmasq acts on it (a
        # DECLINE or RELEASE ends that client's lease): it must be the port's own MAC.
        *_chaddr_rules(ether_type),
        Rule(
            "dhcp discovery",
            [
                eq(ether_type, "ip"),
                eq(SADDR, "0.0.0.0"),
                eq(DADDR, "255.255.255.255"),
                eq(payload("udp", "sport"), 68),
                eq(payload("udp", "dport"), 67),
                ACCEPT,
            ],
        ),
        Rule(
            "ip spoofing",
            [eq(ether_type, "ip"), ne(concat(iif, SADDR), "@vif-ips"), *counted_drop(DROP_IP)],
        ),
        Rule("ipv4", [eq(ether_type, "ip"), ACCEPT]),
        Rule("other ethertypes", counted_drop(DROP_ETHERTYPE)),
    ]
    # A VPN appliance bridges its clients' taps: their frames carry each client's own MAC,
    # so only addresses are checked, and it never serves DHCP nor talks to the DHCP server.
    appliance = [
        Rule(
            "appliance arp ip spoofing",
            [ne(concat(iif, payload("arp", "saddr ip")), "@appliance-ips"), *counted_drop(DROP_ARP)],
        ),
        Rule(
            "appliance arp",
            [
                *_arp_ethernet_ipv4(),
                ACCEPT,
            ],
        ),
        Rule(
            "dhcp from an appliance port",
            [
                eq(ether_type, "ip"),
                eq(meta("l4proto"), "udp"),
                eq(payload("udp", "dport"), {"set": [67, 68]}),
                *counted_drop(DROP_DHCP_SERVER),
            ],
        ),
        Rule(
            "appliance ip spoofing",
            [eq(ether_type, "ip"), ne(concat(iif, SADDR), "@appliance-ips"), *counted_drop(DROP_IP)],
        ),
        Rule("appliance ipv4", [eq(ether_type, "ip"), ACCEPT]),
        Rule("appliance other ethertypes", counted_drop(DROP_ETHERTYPE)),
    ]
    prerouting = [
        Rule("frames from instance ports", [eq(iif, "@vif-ports"), {"jump": {"target": "vif-ingress"}}]),
        Rule(
            "frames from vpn appliances",
            [eq(iif, "@appliance-ports"), {"jump": {"target": "appliance-ingress"}}],
        ),
        Rule("frames from segments", [eq(iif, "@uplink-ports"), ACCEPT]),
        Rule("frames on bridges not ours", [eq(iif, "@foreign-ports"), ACCEPT]),
        # Fail closed: a tap nobody registered, a deallocated instance still plugged.
        Rule("frames from unknown ports", counted_drop(DROP_UNKNOWN_PORT)),
    ]
    # prerouting, not forward: frames addressed to the host itself (the gateway) count too
    return [
        Chain(
            "filter-prerouting",
            tuple(prerouting),
            type="filter",
            hook="prerouting",
            prio=-200,
            policy="accept",
        ),
        Chain("vif-ingress", tuple(vif)),
        Chain("appliance-ingress", tuple(appliance)),
    ]


def _chaddr_rules(ether_type: Json) -> list[Rule]:
    iif = meta("iifname")
    dhcp = [eq(ether_type, "ip"), eq(payload("udp", "dport"), 67)]
    return [
        Rule("dhcp chaddr bytes 0-3 to mark", [*dhcp, set_mark(raw("th", _CHADDR, 32))]),
        Rule(
            "dhcp chaddr bytes 0-3",
            [*dhcp, ne(concat(iif, meta("mark")), "@vif-chaddr-hi"), *counted_drop(DROP_DHCP_CHADDR)],
        ),
        Rule("dhcp chaddr bytes 2-5 to mark", [*dhcp, set_mark(raw("th", _CHADDR + 16, 32))]),
        Rule(
            "dhcp chaddr bytes 2-5",
            [*dhcp, ne(concat(iif, meta("mark")), "@vif-chaddr-lo"), *counted_drop(DROP_DHCP_CHADDR)],
        ),
        Rule("dhcp chaddr mark cleared", [*dhcp, set_mark(0)]),
    ]


def _mark_of(mac_bytes: bytes) -> int:
    """Four bytes of a frame as the packet mark holds them once copied (host byte order)."""
    return int.from_bytes(mac_bytes, sys.byteorder)


def _vif_address(value: str) -> Value:
    """A VIF's own address (``10.0.0.5``, ``10.0.0.5/24`` names the address too) or, with
    a network address, a range it may send from (``10.8.0.0/24``)."""
    if "/" not in value:  # the common case, kept fast (10,000 VIFs per host)
        return _ipv4(value, "VIF address")
    try:
        net = ipaddress.IPv4Interface(value)
    except ValueError:
        raise InvalidInput(f"invalid VIF address {value!r}: not an IPv4 address or range") from None
    if net.ip != net.network.network_address or net.network.prefixlen == 32:
        return str(net.ip)
    return network_value(str(net.network))


def vif_elements(state: HostState) -> dict[str, dict[Value, Value | None]]:
    ports: dict[Value, Value | None] = {}
    macs: dict[Value, Value | None] = {}
    ips: dict[Value, Value | None] = {}
    hi: dict[Value, Value | None] = {}
    lo: dict[Value, Value | None] = {}
    for vif in state.vifs:
        port = _ifname(vif.port, "VIF port")
        mac = _mac(vif.mac)
        raw_mac = bytes.fromhex(mac.replace(":", ""))
        ports[port] = None
        macs[(port, mac)] = None
        hi[(port, _mark_of(raw_mac[0:4]))] = None
        lo[(port, _mark_of(raw_mac[2:6]))] = None
        per_port = [_vif_address(a) for a in vif.addresses]
        if len(per_port) > 1 and any(isinstance(a, Prefix) for a in per_port):  # only ranges overlap
            per_port = _merge(per_port)
        for addr in per_port:
            assert not isinstance(addr, tuple)
            ips[(port, addr)] = None
    app_ports: dict[Value, Value | None] = {}
    app_ips: dict[Value, Value | None] = {}
    for a in state.appliances:
        port = _ifname(a.port, "VPN appliance port")
        if port in ports:
            continue
        app_ports[port] = None
        own = _ipv4(a.vpn_address, "VPN address")
        pool = _pool_values(a.pool_start, a.pool_end)
        for v in _merge([own, *pool]) if pool else [own]:
            assert not isinstance(v, tuple)
            app_ips[(port, v)] = None
    uplinks = {_ifname(b.segment.name, "segment"): None for b in state.bridges if b.segment is not None}
    foreign = {_ifname(p, "foreign bridge port"): None for p in state.foreign_ports}
    return {
        "vif-ports": ports,
        "vif-macs": macs,
        "vif-ips": ips,
        "vif-chaddr-hi": hi,
        "vif-chaddr-lo": lo,
        "appliance-ports": app_ports,
        "appliance-ips": app_ips,
        "uplink-ports": dict.fromkeys(k for k in uplinks if k not in ports and k not in app_ports),
        "foreign-ports": dict.fromkeys(
            k for k in foreign if k not in ports and k not in uplinks and k not in app_ports
        ),
    }


def _pool_values(start: str, end: str) -> list[Value]:
    """The clients' range as CIDR blocks."""
    lo = ipaddress.IPv4Address(_ipv4(start, "VPN pool start"))
    hi = ipaddress.IPv4Address(_ipv4(end, "VPN pool end"))
    if hi < lo:
        raise InvalidInput(f"VPN pool {start}-{end} is empty")
    return [network_value(str(n)) for n in ipaddress.summarize_address_range(lo, hi)]


def _merge(values: list[Value]) -> list[Value]:
    """Interval elements of one port must not overlap: an address inside a range goes."""
    cidrs = [value_text(v) for v in values]
    return collapse(cidrs)
