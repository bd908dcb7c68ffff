"""HostState -> novanet's nftables tables (pure).

``ip novanet`` carries NAT and the forward/input accepts, ``bridge novanet`` the
anti-spoofing of instance ports. Every per-address fact lives in a set or map, so the
rules are the same few dozen whether the host has one floating IP or a hundred thousand,
and a change to addresses is an element edit, never a rule edit.

The NAT follows nova-network's iptables rules (linux_net.init_host, floating_forward_rules),
evaluated in this order in nat-postrouting:

1. no SNAT from the fixed ranges to dmz_cidr / the metadata host;
2. no SNAT inside or between the fixed ranges unless the packet was DNATed;
3. a fixed IP with a floating IP is SNATed to it when its packet was DNATed (instances
   reaching each other by floating IP, so replies come back through this host) and
4. when it leaves through its floating IP's interface;
5. traffic to force_snat_range destinations is SNATed to routing_source_ip on any
   interface (nova's force_snat_range: destinations, not sources);
6. everything else from the fixed ranges leaving through public_interface is SNATed to
   routing_source_ip;
7. beyond the original: a DNATed packet from an instance without a floating IP is SNATed
   to routing_source_ip, so it too can reach another instance by floating IP.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable

from novanet.domain import names
from novanet.domain.errors import InvalidInput
from novanet.host.model import HostState, NatState
from novanet.host.nft_expr import (
    ACCEPT,
    DADDR,
    SADDR,
    concat,
    counted_drop,
    ct_status_dnat,
    ct_status_not_dnat,
    eq,
    lookup,
    meta,
    nat_to,
    ne,
    payload,
)
from novanet.host.nft_spec import (
    Chain,
    Elements,
    Json,
    Rule,
    Ruleset,
    SetSpec,
    Table,
    Value,
    collapse,
    element_command,
    element_json,
    table_commands,
)

METADATA_ADDRESS = "169.254.169.254"
VPN_PRIVATE_PORT = 1194

# Named counters of the bridge table, one per reason a frame is dropped.
DROP_MAC = "drop-mac-spoof"
DROP_IP = "drop-ip-spoof"
DROP_ARP = "drop-arp-spoof"
DROP_DHCP_SERVER = "drop-dhcp-server"
DROP_ETHERTYPE = "drop-ethertype"
DROP_CROSS = "drop-cross-network"  # ip table: routed from one network's bridge to another's
DROP_COUNTERS = (DROP_MAC, DROP_IP, DROP_ARP, DROP_DHCP_SERVER, DROP_ETHERTYPE)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

# --- validation -----------------------------------------------------------------------


def _ifname(value: str, what: str) -> str:
    return names.interface_name(value, what)


def _ipv4(value: str, what: str) -> str:
    # inet_pton: strict dotted quad, and many times faster than ipaddress at 10k entries
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value))
    except (OSError, AttributeError):
        raise InvalidInput(f"invalid {what} {value!r}: not an IPv4 address") from None


def _cidrs(values: Iterable[str], what: str) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.IPv4Network(v, strict=False)))
        except ValueError:
            raise InvalidInput(f"invalid {what} {v!r}: not an IPv4 network") from None
    return out


def _port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise InvalidInput(f"invalid {what} {value!r}: not a port")
    return value


def _mac(value: str) -> str:
    mac = value.lower()
    if not _MAC.match(mac):
        raise InvalidInput(f"invalid MAC address {value!r}")
    return mac


# --- the tables -------------------------------------------------------------------------

_IP_SETS = (
    SetSpec("bridges", ("ifname",)),
    SetSpec("bridge-pairs", ("ifname", "ifname")),  # br . br: routed back into its own bridge
    SetSpec("snat-ranges", ("ipv4_addr",), flags=("interval",)),
    SetSpec("no-snat", ("ipv4_addr",), flags=("interval",)),
    SetSpec("force-snat", ("ipv4_addr",), flags=("interval",)),
    SetSpec("floating-dnat", ("ipv4_addr",), map="ipv4_addr"),  # floating -> fixed
    SetSpec("floating-snat", ("ipv4_addr",), map="ipv4_addr"),  # fixed -> floating
    SetSpec("floating-out", ("ifname", "ipv4_addr")),  # floating's interface . fixed
    SetSpec("vpn-dnat", ("ipv4_addr", "inet_service"), map="ipv4_addr"),  # public . port -> private
    SetSpec("vpn-servers", ("ipv4_addr",)),
)

_BRIDGE_SETS = (
    SetSpec("vif-ports", ("ifname",)),
    SetSpec("vif-macs", ("ifname", "ether_addr")),
    SetSpec("vif-ips", ("ifname", "ipv4_addr")),
)


def _base(name: str, type_: str, hook: str, prio: int, rules: list[Rule]) -> Chain:
    return Chain(name, tuple(rules), type=type_, hook=hook, prio=prio, policy="accept")


def _nat_chains(nat: NatState) -> list[Chain]:
    pub = _ifname(nat.public_interface, "public interface")
    rsip = _ipv4(nat.routing_source_ip, "routing_source_ip")
    floating_dnat = Rule("floating ip dnat", [nat_to("dnat", lookup(DADDR, "floating-dnat"))])
    pre: list[Rule] = []
    if nat.metadata_host:
        host = _ipv4(nat.metadata_host, "metadata_host")
        port = _port(nat.metadata_port, "metadata_port")
        pre.append(
            Rule(
                f"metadata {METADATA_ADDRESS}:80 -> {host}:{port}",
                [
                    eq(DADDR, METADATA_ADDRESS),
                    eq(payload("tcp", "dport"), 80),
                    nat_to("dnat", host, port),
                ],
            )
        )
    pre.append(floating_dnat)
    vpn_key = concat(DADDR, payload("udp", "dport"))
    pre.append(
        Rule(
            f"vpn dnat to port {VPN_PRIVATE_PORT}",
            [eq(meta("l4proto"), "udp"), nat_to("dnat", lookup(vpn_key, "vpn-dnat"), VPN_PRIVATE_PORT)],
        )
    )
    post = [
        Rule(
            "no snat to dmz and metadata",
            [eq(SADDR, "@snat-ranges"), eq(DADDR, "@no-snat"), ACCEPT],
        ),
        Rule(
            "no snat between fixed ranges unless dnat",
            [eq(SADDR, "@snat-ranges"), eq(DADDR, "@snat-ranges"), ct_status_not_dnat(), ACCEPT],
        ),
        Rule(
            "floating snat of dnat traffic",
            [ct_status_dnat(), nat_to("snat", lookup(SADDR, "floating-snat"))],
        ),
        Rule(
            "floating snat out its interface",
            [
                eq(concat(meta("oifname"), SADDR), "@floating-out"),
                nat_to("snat", lookup(SADDR, "floating-snat")),
            ],
        ),
        Rule(
            f"force snat to {rsip}",
            [eq(SADDR, "@snat-ranges"), eq(DADDR, "@force-snat"), nat_to("snat", rsip)],
        ),
        Rule(
            f"snat out {pub} to {rsip}",
            [eq(meta("oifname"), pub), eq(SADDR, "@snat-ranges"), nat_to("snat", rsip)],
        ),
        Rule(
            f"hairpin snat to {rsip}",
            [ct_status_dnat(), eq(SADDR, "@snat-ranges"), nat_to("snat", rsip)],
        ),
    ]
    return [
        _base("nat-prerouting", "nat", "prerouting", -100, pre),
        _base("nat-output", "nat", "output", -100, [floating_dnat]),
        _base("nat-postrouting", "nat", "postrouting", 100, post),
    ]


def _filter_chains() -> list[Chain]:
    iif, oif = meta("iifname"), meta("oifname")
    forward = [
        # Networks (projects) do not reach each other through the host, except by their
        # floating IPs (DNATed flows, both directions).
        Rule("forward within a bridge", [eq(concat(iif, oif), "@bridge-pairs"), ACCEPT]),
        Rule("forward dnat between bridges", [ct_status_dnat(), ACCEPT]),
        Rule(
            "no routing between networks",
            [eq(iif, "@bridges"), eq(oif, "@bridges"), *counted_drop(DROP_CROSS)],
        ),
        Rule("forward from bridges", [eq(meta("iifname"), "@bridges"), ACCEPT]),
        Rule("forward to bridges", [eq(meta("oifname"), "@bridges"), ACCEPT]),
        Rule(
            f"forward vpn udp {VPN_PRIVATE_PORT}",
            [eq(DADDR, "@vpn-servers"), eq(payload("udp", "dport"), VPN_PRIVATE_PORT), ACCEPT],
        ),
    ]
    inp = [
        Rule(
            "dhcp from bridges",
            [eq(meta("iifname"), "@bridges"), eq(payload("udp", "dport"), 67), ACCEPT],
        ),
        Rule(
            "dns from bridges",
            [
                eq(meta("iifname"), "@bridges"),
                eq(meta("l4proto"), {"set": ["tcp", "udp"]}),
                eq(payload("th", "dport"), 53),
                ACCEPT,
            ],
        ),
    ]
    return [
        _base("filter-forward", "filter", "forward", 0, forward),
        _base("filter-input", "filter", "input", 0, inp),
    ]


def _bridge_chains() -> list[Chain]:
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
                eq(payload("arp", "htype"), 1),
                eq(payload("arp", "ptype"), "ip"),
                eq(payload("arp", "hlen"), 6),
                eq(payload("arp", "plen"), 4),
                ACCEPT,
            ],
        ),
        Rule(
            "dhcp server on an instance port",
            [eq(ether_type, "ip"), eq(payload("udp", "sport"), 67), *counted_drop(DROP_DHCP_SERVER)],
        ),
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
    prerouting = [
        Rule("frames from instance ports", [eq(iif, "@vif-ports"), {"jump": {"target": "vif-ingress"}}])
    ]
    # prerouting, not forward: frames addressed to the host itself (the gateway) count too
    return [
        _base("filter-prerouting", "filter", "prerouting", -200, prerouting),
        Chain("vif-ingress", tuple(vif)),
    ]


def _nat_elements(nat: NatState) -> dict[str, dict[Value, Value | None]]:
    snat_ranges = _cidrs(nat.snat_ranges, "fixed range")
    no_snat = _cidrs(nat.no_snat_destinations, "no-SNAT destination")
    if nat.metadata_host:  # the metadata service must see the instance's own address
        no_snat.append(_ipv4(nat.metadata_host, "metadata_host") + "/32")
    dnat: dict[Value, Value | None] = {}
    snat: dict[Value, Value | None] = {}
    out: dict[Value, Value | None] = {}
    for f in nat.floating:
        floating = _ipv4(f.address, "floating address")
        fixed = _ipv4(f.fixed_address, "fixed address")
        dnat[floating] = fixed
        snat.setdefault(fixed, floating)  # several floating IPs on one fixed IP: the first one SNATs
        out[(_ifname(f.interface, "floating interface"), fixed)] = None
    vpn: dict[Value, Value | None] = {}
    servers: dict[Value, Value | None] = {}
    for v in nat.vpn:
        private = _ipv4(v.private_address, "vpn private address")
        key = (_ipv4(v.public_address, "vpn public address"), _port(v.public_port, "vpn public port"))
        vpn.setdefault(key, private)
        servers[private] = None
    return {
        "snat-ranges": dict.fromkeys(collapse(snat_ranges)),
        "no-snat": dict.fromkeys(collapse(no_snat)),
        "force-snat": dict.fromkeys(collapse(_cidrs(nat.force_snat_ranges, "force SNAT range"))),
        "floating-dnat": dnat,
        "floating-snat": snat,
        "floating-out": out,
        "vpn-dnat": vpn,
        "vpn-servers": servers,
    }


def _vif_elements(state: HostState) -> dict[str, dict[Value, Value | None]]:
    ports: dict[Value, Value | None] = {}
    macs: dict[Value, Value | None] = {}
    ips: dict[Value, Value | None] = {}
    for vif in state.vifs:
        port = _ifname(vif.port, "VIF port")
        ports[port] = None
        macs[(port, _mac(vif.mac))] = None
        for addr in vif.addresses:
            ips[(port, _ipv4(addr.split("/", 1)[0], "VIF address"))] = None  # 10.0.0.5 or 10.0.0.5/24
    return {"vif-ports": ports, "vif-macs": macs, "vif-ips": ips}


@functools.lru_cache(maxsize=4)  # a partial sync renders the state the last sync rendered
def build(state: HostState) -> Ruleset:
    """The desired contents of both tables for ``state``."""
    chains = _filter_chains()
    elements: dict[tuple[str, str], Elements] = {
        ("ip", "bridges"): dict.fromkeys(_ifname(b, "bridge") for b in state.bridge_names),
        ("ip", "bridge-pairs"): dict.fromkeys((b, b) for b in state.bridge_names),
    }
    if state.nat is not None:
        chains = _nat_chains(state.nat) + chains
        elements.update({("ip", k): v for k, v in _nat_elements(state.nat).items()})
    elements.update({("bridge", k): v for k, v in _vif_elements(state).items()})
    ip = Table("ip", (DROP_CROSS,), _IP_SETS, tuple(chains))
    bridge = Table("bridge", DROP_COUNTERS, _BRIDGE_SETS, tuple(_bridge_chains()))
    return Ruleset((ip, bridge), {k: v for k, v in elements.items() if v})


def full_sync(state: HostState) -> list[Json]:
    """One transaction replacing both novanet tables with what ``state`` needs; touches no
    other table and works whether or not ours exist."""
    rs = build(state)
    cmds: list[Json] = []
    for table in rs.tables:
        cmds += table_commands(table, rs.elements)
    return cmds


def delta(old: HostState, new: HostState) -> list[Json]:
    """The element edits turning the tables of ``old`` (as last applied) into those of
    ``new``; a full sync when a rule itself changes (public_interface, routing_source_ip,
    metadata, NAT switched on or off). Empty when nothing changed."""
    a, b = build(old), build(new)
    if a.tables != b.tables:
        return full_sync(new)
    deletes: list[Json] = []
    adds: list[Json] = []
    for table in b.tables:
        for spec in table.sets:
            key = (table.family, spec.name)
            before, after = a.elements.get(key, {}), b.elements.get(key, {})
            gone = [k for k, v in before.items() if k not in after or after[k] != v]
            came = [k for k, v in after.items() if k not in before or before[k] != v]
            if gone:  # a map entry whose data changed is deleted, then added again
                deletes.append(
                    element_command("delete", table, spec.name, [element_json(k, None) for k in gone])
                )
            if came:
                adds.append(
                    element_command("add", table, spec.name, [element_json(k, after[k]) for k in came])
                )
    return deletes + adds
