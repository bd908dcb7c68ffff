"""Fail-closed isolation in the rendered tables: VXLAN only from known peers, guests kept
off the host and the underlay, DHCP forgery and unknown bridge ports dropped and counted.

The whole transaction of a representative host is compared with a golden file
(tests/unit/golden/nft_isolation.json); regenerate it with NOVANET_GOLDEN=1 after a
deliberate change and review the diff.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from novanet.domain.errors import InvalidInput
from novanet.host.model import Bridge, HostState, NatState, Segment, VifFilter, VpnAppliance, VxlanGuard
from novanet.host.nft.realizer import FakeNft, delta, drift, full_sync

GOLDEN = Path(__file__).parent / "golden" / "nft_isolation.json"


def state(**kw: Any) -> HostState:
    base: dict[str, Any] = dict(
        host="h1",
        bridges=(
            Bridge(
                "br100",
                ("10.0.0.1/24",),
                Segment("vxlan", "vx100", "und0", 100, "192.0.2.1", ("192.0.2.2",)),
                None,
                "02:aa:bb:cc:dd:ee",
            ),
        ),
        nat=NatState("pub0", "203.0.113.1", snat_ranges=("10.0.0.0/24",), metadata_host="10.0.0.1"),
        vifs=(
            VifFilter("tap1", "br100", "fa:16:3e:00:00:05", ("10.0.0.5",)),
            # an appliance port: its own address and the range behind it
            VifFilter("tap2", "br100", "fa:16:3e:01:02:03", ("10.0.0.2", "10.8.0.0/24", "10.8.0.9")),
        ),
        vxlan=VxlanGuard("und0", 4789, ("192.0.2.1", "192.0.2.2")),
        appliances=(
            # a cloudpipe VPN: its address and the clients' range .251-.254
            VpnAppliance(
                "n1", "p1", "br100", "nvpn0123456789", "02:00:00:00:00:01", "10.0.0.0/24",
                "10.0.0.2", "10.0.0.1", "10.0.0.251", "10.0.0.254",
            ),
        ),
        foreign_ports=("virbr0-nic",),
    )  # fmt: skip
    base.update(kw)
    return HostState(**base)


def _elements(cmds: list[dict[str, Any]], family: str, name: str) -> list[Any]:
    out: list[Any] = []
    for c in cmds:
        e = c.get("add", {}).get("element")
        if e and e["family"] == family and e["name"] == name:
            out += e["elem"]
    return out


def _rules(cmds: list[dict[str, Any]], family: str, chain: str) -> list[dict[str, Any]]:
    return [
        c["add"]["rule"]
        for c in cmds
        if "rule" in c.get("add", {})
        and c["add"]["rule"]["family"] == family
        and c["add"]["rule"]["chain"] == chain
    ]


def test_appliance_port_carries_its_address_and_the_clients_range() -> None:
    cmds = full_sync(state())
    assert _elements(cmds, "bridge", "appliance-ports") == ["nvpn0123456789"]
    port = "nvpn0123456789"
    assert _elements(cmds, "bridge", "appliance-ips") == [
        {"concat": [port, "10.0.0.2"]},
        {"concat": [port, "10.0.0.251"]},
        {"concat": [port, {"prefix": {"addr": "10.0.0.252", "len": 31}}]},
        {"concat": [port, "10.0.0.254"]},
    ]
    assert "nvpn0123456789" not in _elements(cmds, "bridge", "vif-ports")
    comments = [r["comment"] for r in _rules(cmds, "bridge", "appliance-ingress")]
    assert comments == [
        "appliance arp ip spoofing",
        "appliance arp",
        "dhcp from an appliance port",
        "appliance ip spoofing",
        "appliance ipv4",
        "appliance other ethertypes",
    ]
    FakeNft().apply(cmds)


def test_golden_transaction() -> None:
    got = json.dumps(full_sync(state()), indent=1, sort_keys=True) + "\n"
    if os.environ.get("NOVANET_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "regenerate with NOVANET_GOLDEN=1 and review the diff"


@pytest.mark.skipif(sys.byteorder != "little", reason="the golden marks are little-endian")
def test_chaddr_halves_are_the_mac_as_the_mark_holds_it() -> None:
    cmds = full_sync(state())
    # fa:16:3e:00:00:05: bytes 0-3 fa 16 3e 00, bytes 2-5 3e 00 00 05, read little-endian
    assert {"concat": ["tap1", 0x003E16FA]} in _elements(cmds, "bridge", "vif-chaddr-hi")
    assert {"concat": ["tap1", 0x0500003E]} in _elements(cmds, "bridge", "vif-chaddr-lo")


def test_appliance_port_carries_a_range_and_overlaps_are_merged() -> None:
    ips = _elements(full_sync(state()), "bridge", "vif-ips")
    assert ips == [
        {"concat": ["tap1", "10.0.0.5"]},
        {"concat": ["tap2", "10.0.0.2"]},
        {"concat": ["tap2", {"prefix": {"addr": "10.8.0.0", "len": 24}}]},
    ]
    # an address given with its prefix length still means that one address
    one = state(vifs=(VifFilter("tap1", "br100", "fa:16:3e:00:00:05", ("10.0.0.5/24",)),))
    assert _elements(full_sync(one), "bridge", "vif-ips") == [{"concat": ["tap1", "10.0.0.5"]}]
    with pytest.raises(InvalidInput):
        full_sync(state(vifs=(VifFilter("tap1", "br100", "fa:16:3e:00:00:05", ("10.0.0/33",)),)))


def test_segments_and_foreign_ports_are_the_only_unfiltered_ports() -> None:
    cmds = full_sync(state())
    assert _elements(cmds, "bridge", "uplink-ports") == ["vx100"]
    assert _elements(cmds, "bridge", "foreign-ports") == ["virbr0-nic"]
    # a VIF never becomes trusted by also being listed as foreign
    cmds = full_sync(state(foreign_ports=("tap1",)))
    assert _elements(cmds, "bridge", "foreign-ports") == []
    last = _rules(cmds, "bridge", "filter-prerouting")[-1]
    assert last["expr"] == [{"counter": "drop-unknown-port"}, {"drop": None}]


def test_vxlan_only_from_peers_on_the_underlay() -> None:
    cmds = full_sync(state())
    accept, drop = _rules(cmds, "ip", "filter-input")[:2]
    assert accept["comment"] == "vxlan from peers on und0"
    assert {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "und0"}} in accept["expr"]
    assert {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": "@vxlan-peers",
        }
    } in accept["expr"]
    assert drop["expr"][-2:] == [{"counter": "drop-vxlan-foreign"}, {"drop": None}]
    assert _elements(cmds, "ip", "vxlan-peers") == ["192.0.2.1", "192.0.2.2"]
    # without VXLAN segmentation there is no VXLAN rule at all
    plain = full_sync(state(vxlan=None))
    assert not any("vxlan" in r["comment"] for r in _rules(plain, "ip", "filter-input"))


def test_guests_reach_the_host_only_for_what_they_need() -> None:
    rules = _rules(full_sync(state()), "ip", "filter-input")
    assert rules[-1]["comment"] == "nothing else from bridges to the host"
    assert rules[-1]["expr"][-2:] == [{"counter": "drop-to-host"}, {"drop": None}]
    forward = _rules(full_sync(state()), "ip", "filter-forward")
    underlay = next(r for r in forward if r["comment"] == "no routing into the underlay")
    assert forward.index(underlay) < [r["comment"] for r in forward].index("forward from bridges")


def test_a_new_peer_or_port_is_an_element_edit() -> None:
    a = state()
    b = state(
        vxlan=VxlanGuard("und0", 4789, ("192.0.2.1", "192.0.2.2", "192.0.2.3")),
        foreign_ports=("virbr0-nic", "vnet0"),
    )
    cmds = delta(a, b)
    assert cmds == [
        {
            "add": {
                "element": {"family": "ip", "table": "novanet", "name": "vxlan-peers", "elem": ["192.0.2.3"]}
            }
        },
        {
            "add": {
                "element": {
                    "family": "bridge",
                    "table": "novanet",
                    "name": "foreign-ports",
                    "elem": ["vnet0"],
                }
            }
        },
    ]
    fake = FakeNft()
    fake.apply(full_sync(a))
    fake.apply(cmds)
    assert drift(b, fake) == []


def test_rule_count_is_constant_as_peers_and_ports_grow() -> None:
    def many(n: int) -> HostState:
        return state(
            vxlan=VxlanGuard("und0", 4789, tuple(f"192.0.2.{i}" for i in range(1, n + 1))),
            vifs=tuple(
                VifFilter(f"tap{i}", "br100", f"fa:16:3e:00:00:{i:02x}", (f"10.0.0.{i}",))
                for i in range(1, n + 1)
            ),
            foreign_ports=tuple(f"vnet{i}" for i in range(n)),
        )

    def rule_exprs(cmds: list[dict[str, Any]]) -> list[Any]:
        return [c["add"]["rule"]["expr"] for c in cmds if "rule" in c.get("add", {})]

    assert rule_exprs(full_sync(many(1))) == rule_exprs(full_sync(many(200)))
