"""HostState -> novanet's nftables tables (pure).

``ip novanet`` carries NAT and the forward/input filters, ``bridge novanet`` (rendered by
``nft_bridge``) the anti-spoofing of instance ports and the default drop of unknown ports.
Every per-address fact lives in a set or map, so the rules are the same few dozen
whether the host has one floating IP or a hundred thousand, and a change to addresses
is an element edit, never a rule edit.

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

from novanet.host.model import HostState, NatState, VxlanGuard
from novanet.host.nft.bridge import BRIDGE_SETS, DROP_COUNTERS, bridge_chains, vif_elements
from novanet.host.nft.check import cidrs as _cidrs
from novanet.host.nft.check import ifname as _ifname
from novanet.host.nft.check import ipv4 as _ipv4
from novanet.host.nft.check import port as _port
from novanet.host.nft.expr import (
    ACCEPT,
    DADDR,
    SADDR,
    concat,
    counted_drop,
    ct_state,
    ct_status_dnat,
    ct_status_not_dnat,
    eq,
    lookup,
    meta,
    nat_to,
    ne,
    payload,
)
from novanet.host.nft.spec import (
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

# Named counters of the ip table.
DROP_CROSS = "drop-cross-network"  # routed from one network's bridge to another's
DROP_VXLAN = "drop-vxlan-foreign"  # VXLAN not from a known peer through the underlay
DROP_UNDERLAY = "drop-to-underlay"  # routed from a guest bridge to a host's underlay address
DROP_TO_HOST = "drop-to-host"  # from a guest bridge to this host, beyond what guests need
IP_COUNTERS = (DROP_CROSS, DROP_VXLAN, DROP_UNDERLAY, DROP_TO_HOST)


# --- the tables -------------------------------------------------------------------------

_IP_SETS = (
    SetSpec("bridges", ("ifname",)),
    SetSpec("bridge-pairs", ("ifname", "ifname")),  # br . br: routed back into its own bridge
    SetSpec("gateway-addresses", ("ipv4_addr",)),  # every address this host has on a bridge
    SetSpec("bridge-addresses", ("ifname", "ipv4_addr")),  # br . its own addresses
    SetSpec("snat-ranges", ("ipv4_addr",), flags=("interval",)),
    SetSpec("no-snat", ("ipv4_addr",), flags=("interval",)),
    SetSpec("force-snat", ("ipv4_addr",), flags=("interval",)),
    SetSpec("floating-dnat", ("ipv4_addr",), map="ipv4_addr"),  # floating -> fixed
    SetSpec("floating-snat", ("ipv4_addr",), map="ipv4_addr"),  # fixed -> floating
    SetSpec("floating-out", ("ifname", "ipv4_addr")),  # floating's interface . fixed
    SetSpec("vpn-dnat", ("ipv4_addr", "inet_service"), map="ipv4_addr"),  # public . port -> private
    SetSpec("vpn-servers", ("ipv4_addr",)),
    SetSpec("vxlan-peers", ("ipv4_addr",)),
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


def _filter_chains(guard: VxlanGuard | None) -> list[Chain]:
    iif, oif = meta("iifname"), meta("oifname")
    from_bridges = eq(iif, "@bridges")
    forward = [
        # Networks (projects) do not reach each other through the host, except by their
        # floating IPs (DNATed flows, both directions).
        Rule("forward within a bridge", [eq(concat(iif, oif), "@bridge-pairs"), ACCEPT]),
        Rule("forward dnat between bridges", [ct_status_dnat(), ACCEPT]),
        Rule(
            "no routing between networks",
            [from_bridges, eq(oif, "@bridges"), *counted_drop(DROP_CROSS)],
        ),
        # The underlay carries the VXLAN of every project: guests never route into it.
        Rule(
            "no routing into the underlay",
            [from_bridges, eq(DADDR, "@vxlan-peers"), *counted_drop(DROP_UNDERLAY)],
        ),
        Rule("forward from bridges", [from_bridges, ACCEPT]),
        Rule("forward to bridges", [eq(meta("oifname"), "@bridges"), ACCEPT]),
        Rule(
            f"forward vpn udp {VPN_PRIVATE_PORT}",
            [eq(DADDR, "@vpn-servers"), eq(payload("udp", "dport"), VPN_PRIVATE_PORT), ACCEPT],
        ),
    ]
    inp: list[Rule] = []
    if guard is not None:
        # Learning is off and the FDB comes from the database, but the VXLAN socket listens
        # on every address: only known peers, through the underlay, may feed it.
        underlay = _ifname(guard.interface, "vxlan_interface")
        port = _port(guard.port, "vxlan_port")
        inp += [
            Rule(
                f"vxlan from peers on {underlay}",
                [
                    eq(payload("udp", "dport"), port),
                    eq(iif, underlay),
                    eq(SADDR, "@vxlan-peers"),
                    ACCEPT,
                ],
            ),
            Rule(
                f"vxlan from anyone else to udp {port}",
                [eq(payload("udp", "dport"), port), *counted_drop(DROP_VXLAN)],
            ),
        ]
    inp += [
        # A network sees its own gateway, never another network's (nor a VPN client of
        # one project the gateway of another).
        Rule(
            "gateway of another network",
            [
                from_bridges,
                eq(DADDR, "@gateway-addresses"),
                ne(concat(iif, DADDR), "@bridge-addresses"),
                *counted_drop(DROP_CROSS),
            ],
        ),
        Rule("replies to the host from bridges", [from_bridges, ct_state("established", "related"), ACCEPT]),
        Rule("dhcp from bridges", [from_bridges, eq(payload("udp", "dport"), 67), ACCEPT]),
        Rule(
            "dns from bridges",
            [
                from_bridges,
                eq(meta("l4proto"), {"set": ["tcp", "udp"]}),
                eq(payload("th", "dport"), 53),
                ACCEPT,
            ],
        ),
        Rule("ping of the gateway", [from_bridges, eq(payload("icmp", "type"), "echo-request"), ACCEPT]),
        # metadata (and any other DNAT) to a service on this host
        Rule("dnat to the host from bridges", [from_bridges, ct_status_dnat(), ACCEPT]),
        Rule("nothing else from bridges to the host", [from_bridges, *counted_drop(DROP_TO_HOST)]),
    ]
    return [
        _base("filter-forward", "filter", "forward", 0, forward),
        _base("filter-input", "filter", "input", 0, inp),
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


@functools.lru_cache(maxsize=4)  # a partial sync renders the state the last sync rendered
def build(state: HostState) -> Ruleset:
    """The desired contents of both tables for ``state``."""
    chains = _filter_chains(state.vxlan)
    elements: dict[tuple[str, str], Elements] = {
        ("ip", "bridges"): dict.fromkeys(_ifname(b, "bridge") for b in state.bridge_names),
        ("ip", "bridge-pairs"): dict.fromkeys((b, b) for b in state.bridge_names),
        ("ip", "gateway-addresses"): dict.fromkeys(
            _ipv4(a.split("/")[0], "bridge address") for b in state.bridges for a in b.addresses
        ),
        ("ip", "bridge-addresses"): dict.fromkeys(
            (_ifname(b.name, "bridge"), _ipv4(a.split("/")[0], "bridge address"))
            for b in state.bridges
            for a in b.addresses
        ),
    }
    if state.vxlan is not None:
        elements[("ip", "vxlan-peers")] = dict.fromkeys(
            _ipv4(p, "underlay address") for p in state.vxlan.peers
        )
    if state.nat is not None:
        chains = _nat_chains(state.nat) + chains
        elements.update({("ip", k): v for k, v in _nat_elements(state.nat).items()})
    elements.update({("bridge", k): v for k, v in vif_elements(state).items()})
    ip = Table("ip", IP_COUNTERS, _IP_SETS, tuple(chains))
    bridge = Table("bridge", DROP_COUNTERS, BRIDGE_SETS, tuple(bridge_chains()))
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
