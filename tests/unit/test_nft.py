"""The nftables transaction novanet renders, checked on its structure and on FakeNft."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novanet.domain.errors import InvalidInput
from novanet.host.model import Bridge, FloatingNat, HostState, NatState, VifFilter, VpnForward
from novanet.host.nft.backend import error_line
from novanet.host.nft.realizer import FakeNft, NftError, RealNft, delta, drift, full_sync

PUB = "eth0"
RSIP = "203.0.113.1"


def nat(**kw: Any) -> NatState:
    base: dict[str, Any] = dict(
        public_interface=PUB,
        routing_source_ip=RSIP,
        snat_ranges=("10.0.0.0/24",),
        no_snat_destinations=("192.0.2.0/24",),
        force_snat_ranges=("198.51.100.0/24",),
        metadata_host="10.0.0.1",
        metadata_port=8775,
        floating=(FloatingNat("203.0.113.10", "10.0.0.5", PUB),),
        vpn=(VpnForward("203.0.113.20", 1000, "10.0.0.2"),),
    )
    base.update(kw)
    return NatState(**base)


def small(**kw: Any) -> HostState:
    base: dict[str, Any] = dict(
        host="h1",
        bridges=(Bridge("br100", ("10.0.0.1/24",)),),
        nat=nat(),
        vifs=(VifFilter("vif5", "br100", "FA:16:3E:00:00:05", ("10.0.0.5",)),),
    )
    base.update(kw)
    return HostState(**base)


def scaled(n: int) -> HostState:
    fixed = ipaddress.IPv4Address("10.128.0.0")
    floating = ipaddress.IPv4Address("100.64.0.0")
    return small(
        nat=nat(
            snat_ranges=("10.128.0.0/16",),
            floating=tuple(FloatingNat(str(floating + i), str(fixed + i), PUB) for i in range(n)),
        ),
        vifs=tuple(
            VifFilter(f"tap{i}", "br100", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", (str(fixed + i),))
            for i in range(n)
        ),
    )


def cmds_of(cmds: list[dict[str, Any]], verb: str, kind: str) -> list[dict[str, Any]]:
    return [c[verb][kind] for c in cmds if verb in c and kind in c[verb]]


def rules(cmds: list[dict[str, Any]], family: str, chain: str) -> list[dict[str, Any]]:
    return [r for r in cmds_of(cmds, "add", "rule") if r["family"] == family and r["chain"] == chain]


def elements(cmds: list[dict[str, Any]], family: str, name: str) -> list[Any]:
    out: list[Any] = []
    for e in cmds_of(cmds, "add", "element"):
        if e["family"] == family and e["name"] == name:
            out += e["elem"]
    return out


def comments(cmds: list[dict[str, Any]], family: str, chain: str) -> list[str]:
    return [r["comment"] for r in rules(cmds, family, chain)]


def no_handles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: no_handles(v) for k, v in node.items() if k != "handle"}
    if isinstance(node, list):
        return [no_handles(v) for v in node]
    return node


T = {"family": "ip", "table": "novanet"}


def _elem(verb: str, name: str, *elem: Any) -> dict[str, Any]:
    return {verb: {"element": {**T, "name": name, "elem": list(elem)}}}


def fake_with(state: HostState) -> FakeNft:
    f = FakeNft()
    f.apply(full_sync(state))
    return f


# --- the rendered transaction ---------------------------------------------------------------


def test_full_sync_replaces_only_our_two_tables() -> None:
    cmds = full_sync(small())
    heads = [c for c in cmds if "table" in next(iter(c.values()))]
    assert heads == [
        {"add": {"table": {"family": "ip", "name": "novanet"}}},
        {"delete": {"table": {"family": "ip", "name": "novanet"}}},
        {"add": {"table": {"family": "ip", "name": "novanet"}}},
        {"add": {"table": {"family": "bridge", "name": "novanet"}}},
        {"delete": {"table": {"family": "bridge", "name": "novanet"}}},
        {"add": {"table": {"family": "bridge", "name": "novanet"}}},
    ]
    for c in cmds:
        obj = next(iter(next(iter(c.values())).values()))
        assert obj.get("table", obj.get("name")) == "novanet"
        assert obj["family"] in ("ip", "bridge")


def test_chains_follow_the_naming_convention() -> None:
    cmds = full_sync(small())
    chains = {(c["family"], c["name"]): c for c in cmds_of(cmds, "add", "chain")}
    assert set(chains) == {
        ("ip", "nat-prerouting"),
        ("ip", "nat-output"),
        ("ip", "nat-postrouting"),
        ("ip", "filter-forward"),
        ("ip", "filter-input"),
        ("bridge", "filter-prerouting"),
        ("bridge", "vif-ingress"),
        ("bridge", "appliance-ingress"),
    }
    for (_family, name), c in chains.items():
        if "hook" in c:
            assert name == f"{c['type']}-{c['hook']}"
            assert c["policy"] == "accept"
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
    assert chains[("ip", "nat-prerouting")]["prio"] == -100
    assert chains[("ip", "nat-postrouting")]["prio"] == 100
    assert chains[("bridge", "filter-prerouting")]["prio"] == -200
    names = [s["name"] for s in cmds_of(cmds, "add", "set") + cmds_of(cmds, "add", "map")]
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", n) for n in names)


def test_sets_and_maps_hold_the_per_address_data() -> None:
    cmds = full_sync(small())
    maps = {m["name"]: m for m in cmds_of(cmds, "add", "map")}
    assert maps["floating-dnat"]["type"] == "ipv4_addr" and maps["floating-dnat"]["map"] == "ipv4_addr"
    assert maps["vpn-dnat"]["type"] == ["ipv4_addr", "inet_service"]
    assert elements(cmds, "ip", "floating-dnat") == [["203.0.113.10", "10.0.0.5"]]
    assert elements(cmds, "ip", "floating-snat") == [["10.0.0.5", "203.0.113.10"]]
    assert elements(cmds, "ip", "floating-out") == [{"concat": [PUB, "10.0.0.5"]}]
    assert elements(cmds, "ip", "vpn-dnat") == [[{"concat": ["203.0.113.20", 1000]}, "10.0.0.2"]]
    assert elements(cmds, "ip", "vpn-servers") == ["10.0.0.2"]
    assert elements(cmds, "ip", "bridges") == ["br100"]
    assert elements(cmds, "ip", "snat-ranges") == [{"prefix": {"addr": "10.0.0.0", "len": 24}}]
    # the metadata host is exempt from SNAT even when the caller forgot it
    assert elements(cmds, "ip", "no-snat") == ["10.0.0.1", {"prefix": {"addr": "192.0.2.0", "len": 24}}]
    assert elements(cmds, "ip", "force-snat") == [{"prefix": {"addr": "198.51.100.0", "len": 24}}]
    assert elements(cmds, "bridge", "vif-ports") == ["vif5"]
    assert elements(cmds, "bridge", "vif-macs") == [{"concat": ["vif5", "fa:16:3e:00:00:05"]}]
    assert elements(cmds, "bridge", "vif-ips") == [{"concat": ["vif5", "10.0.0.5"]}]


def test_overlapping_ranges_are_merged_for_interval_sets() -> None:
    cmds = full_sync(small(nat=nat(snat_ranges=("10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25"))))
    assert elements(cmds, "ip", "snat-ranges") == [{"prefix": {"addr": "10.0.0.0", "len": 23}}]


def test_nat_rules() -> None:
    cmds = full_sync(small())
    pre = rules(cmds, "ip", "nat-prerouting")
    assert pre[0]["comment"] == "metadata 169.254.169.254:80 -> 10.0.0.1:8775"
    assert pre[0]["expr"][-1] == {"dnat": {"family": "ip", "addr": "10.0.0.1", "port": 8775}}
    floating_dnat = {
        "dnat": {
            "family": "ip",
            "addr": {
                "map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@floating-dnat"}
            },
        }
    }
    assert pre[1]["expr"] == [floating_dnat]
    assert rules(cmds, "ip", "nat-output")[0]["expr"] == [floating_dnat]
    vpn = pre[2]["expr"][-1]["dnat"]
    assert vpn["addr"]["map"]["data"] == "@vpn-dnat" and vpn["port"] == 1194
    assert comments(cmds, "ip", "nat-postrouting") == [
        "no snat to dmz and metadata",
        "no snat between fixed ranges unless dnat",
        "floating snat of dnat traffic",
        "floating snat out its interface",
        f"force snat to {RSIP}",
        f"snat out {PUB} to {RSIP}",
        f"hairpin snat to {RSIP}",
    ]
    post = rules(cmds, "ip", "nat-postrouting")
    not_dnat = {"match": {"op": "==", "left": {"&": [{"ct": {"key": "status"}}, "dnat"]}, "right": 0}}
    assert not_dnat in post[1]["expr"]
    assert post[5]["expr"] == [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": PUB}},
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": "@snat-ranges",
            }
        },
        {"snat": {"family": "ip", "addr": RSIP}},
    ]
    assert comments(cmds, "ip", "filter-forward") == [
        "forward within a bridge",
        "forward dnat between bridges",
        "no routing between networks",
        "no routing into the underlay",
        "forward from bridges",
        "forward to bridges",
        "forward vpn udp 1194",
    ]
    assert comments(cmds, "ip", "filter-input") == [
        "gateway of another network",
        "replies to the host from bridges",
        "dhcp from bridges",
        "dns from bridges",
        "ping of the gateway",
        "dnat to the host from bridges",
        "nothing else from bridges to the host",
    ]


def test_no_metadata_rule_without_metadata_host_and_no_nat_chains_without_nat() -> None:
    cmds = full_sync(small(nat=nat(metadata_host=None)))
    assert not any("metadata" in c for c in comments(cmds, "ip", "nat-prerouting"))
    cmds = full_sync(small(nat=None))
    assert {c["name"] for c in cmds_of(cmds, "add", "chain") if c["family"] == "ip"} == {
        "filter-forward",
        "filter-input",
    }
    FakeNft().apply(cmds)  # still a valid transaction


def test_bridge_anti_spoofing_rules() -> None:
    cmds = full_sync(small())
    assert [c["name"] for c in cmds_of(cmds, "add", "counter") if c["family"] == "bridge"] == [
        "drop-mac-spoof",
        "drop-ip-spoof",
        "drop-arp-spoof",
        "drop-dhcp-server",
        "drop-dhcp-chaddr",
        "drop-ethertype",
        "drop-unknown-port",
    ]
    entry, appliances, segments, foreign, unknown = rules(cmds, "bridge", "filter-prerouting")
    assert entry["expr"][-1] == {"jump": {"target": "vif-ingress"}}
    assert appliances["expr"][-1] == {"jump": {"target": "appliance-ingress"}}
    assert segments["expr"][0]["match"]["right"] == "@uplink-ports"
    assert foreign["expr"][0]["match"]["right"] == "@foreign-ports"
    assert unknown["expr"] == [{"counter": "drop-unknown-port"}, {"drop": None}]  # fail closed
    vif = rules(cmds, "bridge", "vif-ingress")
    assert [r["comment"] for r in vif] == [
        "mac spoofing",
        "arp mac spoofing",
        "arp ip spoofing",
        "arp",
        "dhcp server on an instance port",
        "dhcp to a client port from an instance port",
        "dhcp chaddr bytes 0-3 to mark",
        "dhcp chaddr bytes 0-3",
        "dhcp chaddr bytes 2-5 to mark",
        "dhcp chaddr bytes 2-5",
        "dhcp chaddr mark cleared",
        "dhcp discovery",
        "ip spoofing",
        "ipv4",
        "other ethertypes",
    ]
    # every drop is counted
    for r in vif:
        if {"drop": None} in r["expr"]:
            assert any("counter" in e for e in r["expr"])
    assert vif[0]["expr"][0]["match"]["op"] == "!="
    assert vif[0]["expr"][0]["match"]["right"] == "@vif-macs"
    assert vif[-1]["expr"] == [{"counter": "drop-ethertype"}, {"drop": None}]


def test_rule_count_is_constant_as_addresses_grow() -> None:
    one, many = full_sync(scaled(1)), full_sync(scaled(1000))
    assert len(cmds_of(one, "add", "rule")) == len(cmds_of(many, "add", "rule"))
    assert [r["expr"] for r in cmds_of(one, "add", "rule")] == [
        r["expr"] for r in cmds_of(many, "add", "rule")
    ]
    assert len(many) == len(one)  # elements go in one command per set
    for name in ("floating-dnat", "floating-snat", "floating-out"):
        assert len(elements(many, "ip", name)) == 1000
    for name in ("vif-ports", "vif-macs", "vif-ips", "vif-chaddr-hi", "vif-chaddr-lo"):
        assert len(elements(many, "bridge", name)) == 1000


def test_invalid_names_and_addresses_are_refused() -> None:
    with pytest.raises(InvalidInput):
        full_sync(small(nat=nat(public_interface="eth0; rm -rf /")))
    with pytest.raises(InvalidInput):
        full_sync(small(vifs=(VifFilter("a" * 16, "br100", "02:00:00:00:00:01", ()),)))
    with pytest.raises(InvalidInput):
        full_sync(small(nat=nat(floating=(FloatingNat("203.0.113.300", "10.0.0.5", PUB),))))
    with pytest.raises(InvalidInput):
        full_sync(small(vifs=(VifFilter("vif5", "br100", "02:00:00:00:00", ()),)))
    with pytest.raises(InvalidInput):
        full_sync(small(nat=nat(vpn=(VpnForward("203.0.113.20", 70000, "10.0.0.2"),))))


# --- delta ---------------------------------------------------------------------------------------


def test_delta_of_equal_states_is_empty() -> None:
    assert delta(small(), small()) == []


def test_delta_of_one_floating_ip_is_three_element_adds() -> None:
    a = scaled(1000)
    assert a.nat is not None
    extra = FloatingNat("198.51.100.77", "10.128.250.1", PUB)
    b = dataclasses.replace(a, nat=dataclasses.replace(a.nat, floating=(*a.nat.floating, extra)))
    d = delta(a, b)
    assert d == [
        _elem("add", "floating-dnat", ["198.51.100.77", "10.128.250.1"]),
        _elem("add", "floating-snat", ["10.128.250.1", "198.51.100.77"]),
        _elem("add", "floating-out", {"concat": [PUB, "10.128.250.1"]}),
    ]
    assert delta(b, a) == [
        _elem("delete", "floating-dnat", "198.51.100.77"),
        _elem("delete", "floating-snat", "10.128.250.1"),
        _elem("delete", "floating-out", {"concat": [PUB, "10.128.250.1"]}),
    ]


def test_delta_rebinds_a_moved_floating_ip() -> None:
    a = small()
    b = small(nat=nat(floating=(FloatingNat("203.0.113.10", "10.0.0.6", PUB),)))
    d = delta(a, b)
    assert _elem("delete", "floating-dnat", "203.0.113.10") in d
    assert _elem("add", "floating-dnat", ["203.0.113.10", "10.0.0.6"]) in d
    assert not any("table" in next(iter(c.values())) for c in d)


@pytest.mark.parametrize(
    "changed",
    [
        {"public_interface": "eth1"},
        {"routing_source_ip": "203.0.113.2"},
        {"metadata_host": None},
        {"metadata_port": 8080},
    ],
)
def test_delta_falls_back_to_full_sync_when_a_rule_changes(changed: dict[str, Any]) -> None:
    b = small(nat=nat(**changed))
    assert delta(small(), b) == full_sync(b)


def test_delta_falls_back_to_full_sync_when_nat_appears() -> None:
    assert delta(small(nat=None), small()) == full_sync(small())


def _apply_both_ways(a: HostState, b: HostState) -> None:
    via_delta = fake_with(a)
    via_delta.apply(delta(a, b))
    assert no_handles(via_delta.dump()) == no_handles(fake_with(b).dump())
    assert drift(b, via_delta) == []


CASES = [
    (small(), small(vifs=())),
    (small(vifs=()), small()),
    (small(), small(bridges=(Bridge("br100"), Bridge("br101")))),
    (small(), small(nat=nat(snat_ranges=("10.0.0.0/24", "10.0.1.0/24")))),
    (
        small(nat=nat(snat_ranges=("10.0.0.0/24", "10.0.1.0/24"))),
        small(nat=nat(snat_ranges=("10.0.1.0/24",))),
    ),
    (small(), small(nat=nat(no_snat_destinations=()))),
    (small(), small(nat=nat(vpn=(VpnForward("203.0.113.20", 1000, "10.0.0.3"),)))),
    (small(), small(nat=nat(floating=()))),
    (small(), small(vifs=(VifFilter("vif5", "br100", "fa:16:3e:00:00:05", ("10.0.0.5", "10.0.0.50")),))),
    (scaled(50), scaled(80)),
    (small(), small(nat=nat(public_interface="eth1"))),
    (small(), small(nat=None)),
]


@pytest.mark.parametrize(("a", "b"), CASES)
def test_delta_after_full_sync_equals_full_sync(a: HostState, b: HostState) -> None:
    _apply_both_ways(a, b)
    _apply_both_ways(b, a)


_octet = st.integers(min_value=1, max_value=6)
_floating = st.builds(
    lambda f, x, i: FloatingNat(f"203.0.113.{f}", f"10.0.0.{x}", f"eth{i}"), _octet, _octet, st.integers(0, 1)
)
_vif = st.builds(
    lambda p, m, ips: VifFilter(
        f"vif{p}", "br100", f"02:00:00:00:00:0{m}", tuple(f"10.0.0.{i}" for i in ips)
    ),
    _octet,
    _octet,
    st.lists(_octet, max_size=3),
)


def _random_state(
    floating: list[FloatingNat], vifs: list[VifFilter], bridges: set[int], ranges: set[int]
) -> HostState:
    unique = {f.address: f for f in floating}  # one fixed IP may still have several
    return small(
        nat=nat(
            floating=tuple(unique[a] for a in sorted(unique)),
            snat_ranges=tuple(f"10.0.{r}.0/24" for r in ranges),
        ),
        vifs=tuple(vifs),
        bridges=tuple(Bridge(f"br{b}") for b in sorted(bridges)),
    )


_state = st.builds(
    _random_state,
    st.lists(_floating, max_size=5),
    st.lists(_vif, max_size=4),
    st.sets(_octet, max_size=3),
    st.sets(_octet, max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_state, _state)
def test_delta_property(a: HostState, b: HostState) -> None:
    _apply_both_ways(a, b)


# --- FakeNft semantics --------------------------------------------------------------------------


def test_fake_transaction_is_atomic() -> None:
    f = fake_with(small())
    before = f.dump()
    bad = [
        _elem("add", "floating-dnat", ["203.0.113.99", "10.0.0.9"]),
        {"delete": {"table": {"family": "ip", "name": "other"}}},
    ]
    with pytest.raises(NftError, match="No such file or directory"):
        f.apply(bad)
    assert f.dump() == before
    with pytest.raises(NftError, match="No such file or directory"):
        f.apply([*full_sync(small()), _elem("delete", "floating-dnat", "198.51.100.1")])
    assert f.dump() == before


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        ({"create": {"table": {"family": "ip", "name": "novanet"}}}, "File exists"),
        ({"delete": {"table": {"family": "inet", "name": "novanet"}}}, "No such file or directory"),
        (_elem("delete", "floating-dnat", "203.0.113.99"), "No such file or directory"),
        (_elem("add", "floating-dnat", ["203.0.113.10", "10.0.0.9"]), "File exists"),
        (_elem("create", "floating-dnat", ["203.0.113.10", "10.0.0.5"]), "File exists"),
        (_elem("add", "floating-dnat", "203.0.113.99"), "Invalid argument"),
        (_elem("add", "vpn-servers", ["10.0.0.9", "10.0.0.9"]), "set is not a map"),
        (_elem("add", "vpn-servers", "not-an-address"), "Could not resolve hostname"),
        (_elem("add", "snat-ranges", {"prefix": {"addr": "10.0.0.128", "len": 25}}), "overlaps"),
        (_elem("add", "nope", "10.0.0.1"), "No such file or directory"),
        ({"delete": {"set": {**T, "name": "floating-out"}}}, "Device or resource busy"),
        ({"delete": {"counter": {"family": "bridge", "table": "novanet", "name": "drop-ip-spoof"}}}, "busy"),
        ({"delete": {"chain": {"family": "bridge", "table": "novanet", "name": "vif-ingress"}}}, "busy"),
        (
            {"add": {"rule": {**T, "chain": "nat-output", "expr": [{"jump": {"target": "x"}}]}}},
            "No such file",
        ),
        ({"add": {"rule": {**T, "chain": "nat-output", "expr": [{"counter": "x"}]}}}, "No such file"),
        ({"add": {"rule": {**T, "chain": "nope", "expr": [{"accept": None}]}}}, "No such file"),
        (
            {"add": {"chain": {**T, "name": "nat-output", "type": "nat", "hook": "output", "prio": 0}}},
            "supported",
        ),
        ({"flush": {"set": {**T, "name": "floating-dnat"}}}, "No such file or directory"),
        ({"frobnicate": {"table": {"family": "ip", "name": "x"}}}, "does not model"),
        ({"add": {"element": {**T, "elem": ["10.0.0.1"]}}}, "malformed"),
        ({"add": {"table": {"family": "ipx", "name": "x"}}}, "unknown address family"),
    ],
)
def test_fake_refuses_like_the_kernel(cmd: dict[str, Any], message: str) -> None:
    f = fake_with(small())
    before = f.dump()
    with pytest.raises(NftError, match=message):
        f.apply([cmd])
    assert f.dump() == before


def test_fake_accepts_what_the_kernel_accepts() -> None:
    f = fake_with(small())
    f.apply([{"add": {"table": {"family": "ip", "name": "novanet"}}}])  # add is idempotent
    f.apply([_elem("add", "floating-dnat", ["203.0.113.10", "10.0.0.5"])])  # same data again
    f.apply([_elem("add", "snat-ranges", {"prefix": {"addr": "10.0.0.0", "len": 24}})])  # same interval
    # a map key rebound in one transaction; an interval replaced by a wider one
    f.apply(
        [
            _elem("delete", "floating-dnat", "203.0.113.10"),
            _elem("add", "floating-dnat", ["203.0.113.10", "10.0.0.6"]),
            _elem("delete", "snat-ranges", {"prefix": {"addr": "10.0.0.0", "len": 24}}),
            _elem("add", "snat-ranges", {"prefix": {"addr": "10.0.0.0", "len": 16}}),
        ]
    )
    f.apply([{"delete": {"chain": {**T, "name": "nat-output"}}}])  # its rules go with it
    f.apply([{"flush": {"map": {**T, "name": "floating-dnat"}}}])
    dump = {(k, v["name"]): v for i in f.dump()["nftables"] for k, v in i.items() if "name" in v}
    assert "elem" not in dump[("map", "floating-dnat")]
    assert dump[("set", "snat-ranges")]["elem"] == [{"prefix": {"addr": "10.0.0.0", "len": 16}}]
    assert ("chain", "nat-output") not in dump


def test_fake_dump_looks_like_nft_list() -> None:
    items = fake_with(small()).dump()["nftables"]
    kinds = [next(iter(i)) for i in items]
    assert kinds.count("table") == 2
    macs = next(i["set"] for i in items if "set" in i and i["set"]["name"] == "vif-macs")
    assert macs["type"] == ["ifname", "ether_addr"]
    assert macs["elem"] == [{"concat": ["vif5", "fa:16:3e:00:00:05"]}]
    rule = next(i["rule"] for i in items if "rule" in i)
    assert {"family", "table", "chain", "handle", "expr", "comment"} <= set(rule)


# --- drift -------------------------------------------------------------------------------------


def test_no_drift_after_full_sync() -> None:
    assert drift(small(), fake_with(small())) == []
    assert drift(scaled(300), fake_with(scaled(300))) == []


def test_tables_present_is_the_cheap_probe() -> None:
    f = FakeNft()
    assert not f.tables_present()
    f.apply(full_sync(small(nat=None, vifs=())))
    assert f.tables_present()
    f.apply([{"delete": {"table": {"family": "bridge", "name": "novanet"}}}])
    assert not f.tables_present()


def test_drift_reports_missing_tables() -> None:
    assert drift(small(), FakeNft()) == ["table ip novanet is missing", "table bridge novanet is missing"]


def test_drift_reports_missing_and_extra_elements() -> None:
    f = fake_with(small())
    f.apply(
        [
            _elem("delete", "floating-dnat", "203.0.113.10"),
            _elem("add", "floating-dnat", ["203.0.113.66", "10.0.0.66"]),
            {
                "delete": {
                    "element": {
                        "family": "bridge",
                        "table": "novanet",
                        "name": "vif-ips",
                        "elem": [{"concat": ["vif5", "10.0.0.5"]}],
                    }
                }
            },
        ]
    )
    assert drift(small(), f) == [
        "map ip novanet floating-dnat: 1 missing: 203.0.113.10 : 10.0.0.5",
        "map ip novanet floating-dnat: 1 unexpected: 203.0.113.66 : 10.0.0.66",
        "set bridge novanet vif-ips: 1 missing: vif5 . 10.0.0.5",
    ]


def test_drift_names_a_few_elements_and_counts_the_rest() -> None:
    (line,) = drift(scaled(20), fake_with(scaled(0)))[:1]
    assert line.startswith("map ip novanet floating-dnat: 20 missing: ")
    assert line.endswith(" and 15 more")


def test_drift_reports_changed_rules() -> None:
    f = fake_with(small())
    assert drift(small(nat=nat(public_interface="eth1")), f) == [
        "chain ip novanet nat-postrouting: 7 rules, expected 7; missing: 'snat out eth1 to 203.0.113.1'; "
        "unexpected: 'snat out eth0 to 203.0.113.1'"
    ]
    f.apply([{"add": {"rule": {**T, "chain": "filter-input", "expr": [{"drop": None}]}}}])
    assert drift(small(), f) == [
        "chain ip novanet filter-input: 8 rules, expected 7; unexpected: '<rule without comment>'"
    ]
    f.apply([{"flush": {"chain": {**T, "chain": "filter-input", "name": "filter-input"}}}])
    assert drift(small(), f) == [
        "chain ip novanet filter-input: 0 rules, expected 7; missing: 'gateway of another network',"
        " 'replies to the host from bridges',"
        " 'dhcp from bridges', 'dns from bridges', 'ping of the gateway', 'dnat to the host from bridges',"
        " 'nothing else from bridges to the host'"
    ]


def test_drift_reports_missing_chain_set_and_counter() -> None:
    f = FakeNft()
    f.apply(
        [
            {"add": {"table": {"family": "ip", "name": "novanet"}}},
            {"add": {"table": {"family": "bridge", "name": "novanet"}}},
            {"add": {"set": {**T, "name": "stray", "type": "ipv4_addr"}}},
        ]
    )
    lines = drift(small(nat=None, vifs=()), f)
    assert "set ip novanet bridges is missing" in lines
    assert "set ip novanet stray is unexpected" in lines
    assert "chain ip novanet filter-forward is missing" in lines
    assert "counter bridge novanet drop-ip-spoof is missing" in lines


# --- RealNft without a kernel ----------------------------------------------------------------


def test_real_nft_reports_nft_failures_as_nft_error() -> None:
    with pytest.raises(NftError, match="cannot run nft"):
        RealNft(nft="/nonexistent/nft").apply(full_sync(small()))
    RealNft(nft="/nonexistent/nft").apply([])  # nothing to do: nft is not even run
    with pytest.raises(ValueError):
        RealNft(netns="bad name")


def _stub_nft(path: Path, body: str) -> str:
    """A stand-in for the nft binary: RealNft is exercised without root or a kernel."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_real_nft_sends_one_json_transaction_on_stdin(tmp_path: Path) -> None:
    nft = _stub_nft(tmp_path / "nft", f'echo "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    cmds = full_sync(small())
    RealNft(nft=nft).apply(cmds)
    assert (tmp_path / "argv").read_text().split() == ["-j", "-f", "-"]
    assert json.loads((tmp_path / "stdin").read_text()) == {"nftables": cmds}


def test_real_nft_raises_nft_message(tmp_path: Path) -> None:
    nft = _stub_nft(
        tmp_path / "nft", 'echo "internal:0:0-0: Error: Could not process rule: File exists" >&2\nexit 1\n'
    )
    with pytest.raises(NftError, match=r"^Could not process rule: File exists$"):
        RealNft(nft=nft).apply(full_sync(small()))


def test_real_nft_dump_lists_our_tables_and_skips_missing_ones(tmp_path: Path) -> None:
    listing = {
        "nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "novanet"}}]
    }
    body = (
        f"if [ \"$4\" = ip ]; then echo '{json.dumps(listing)}'; exit 0; fi\n"
        'echo "Error: No such file or directory" >&2\nexit 1\n'
    )
    dump = RealNft(nft=_stub_nft(tmp_path / "nft", body)).dump()
    assert dump == {"nftables": [{"table": {"family": "ip", "name": "novanet"}}]}
    # an nft that cannot even enter the namespace is an error, not a missing table
    gone = "echo 'Cannot open network namespace \"x\": No such file or directory' >&2\nexit 255\n"
    with pytest.raises(NftError, match="Cannot open network namespace"):
        RealNft(nft=_stub_nft(tmp_path / "nft2", gone)).dump()


def test_real_nft_tables_present_lists_table_names_only(tmp_path: Path) -> None:
    tables = [{"table": {"family": f, "name": "novanet", "handle": 1}} for f in ("ip", "bridge")]
    listing = json.dumps({"nftables": [{"metainfo": {}}, *tables]})
    body = f"echo \"$@\" > {tmp_path}/argv\necho '{listing}'\n"
    assert RealNft(nft=_stub_nft(tmp_path / "nft", body)).tables_present()
    assert (tmp_path / "argv").read_text().split() == ["-j", "list", "tables"]
    listing = json.dumps({"nftables": [{"metainfo": {}}, tables[0]]})
    assert not RealNft(nft=_stub_nft(tmp_path / "nft2", f"echo '{listing}'\n")).tables_present()


def test_error_line_keeps_nft_message() -> None:
    stderr = "internal:0:0-0: Error: Could not process rule: No such file or directory\n\n"
    assert error_line(stderr) == "Could not process rule: No such file or directory"
    assert error_line("netlink: Error: set is not a map") == "set is not a map"
    assert error_line("") == "nft failed"
