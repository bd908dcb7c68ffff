"""The link realizer against the faithful fake: convergence, idempotence, errors, VIFs."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from novanet.domain.errors import InvalidInput
from novanet.host.model import Bridge, Segment
from novanet.host.netlink.fake import ALL_FEATURES
from novanet.host.netlink.realizer import (
    FakeLinks,
    KernelFeatureMissing,
    LinkError,
    ObjectExists,
    ObjectNotFound,
    Route,
    arping_command,
    drift,
    enable_forwarding,
    ensure_bridges,
    remove_bridges,
)
from novanet.host.vif import libvirt_xml, plug_netns, plug_tap, unplug

VX = Segment(
    "vxlan", "vx100", parent="eth0", ident=100, local="192.0.2.1", remotes=("192.0.2.2", "192.0.2.3")
)
BR = Bridge("br100", ("10.0.0.1/24", "10.0.0.2/24"), VX)


@pytest.fixture
def host() -> FakeLinks:
    fake = FakeLinks()
    fake.add_nic("eth0")
    fake.add_address("eth0", "192.0.2.1/24")
    return fake


def links(fake: FakeLinks) -> dict[str, dict[str, object]]:
    return fake.dump()["links"]  # type: ignore[no-any-return]


# -- ensure_bridges ------------------------------------------------------------------------
def test_creates_bridge_with_vxlan_segment(host: FakeLinks) -> None:
    changes = ensure_bridges(host, [BR])
    assert "created bridge br100" in changes
    d = links(host)
    assert d["br100"] == {
        "kind": "bridge",
        "up": True,
        "mtu": 1450,  # follows its only port, the VXLAN device
        "mac": d["br100"]["mac"],
        "stp": False,
        "forward_delay": 0,
        "addresses": ["10.0.0.1/24", "10.0.0.2/24 secondary"],
        "ipv6": False,
    }
    vx = d["vx100"]
    assert (vx["kind"], vx["master"], vx["up"], vx["vni"], vx["parent"], vx["local"], vx["port"]) == (
        "vxlan",
        "br100",
        True,
        100,
        "eth0",
        "192.0.2.1",
        4789,
    )
    assert vx["learning"] is False  # remotes come from the database only
    assert vx["ipv6"] is False
    assert vx["fdb"] == ["192.0.2.2", "192.0.2.3"]


def test_second_run_changes_nothing(host: FakeLinks) -> None:
    ensure_bridges(host, [BR])
    before = host.dump()
    assert ensure_bridges(host, [BR]) == []
    assert host.dump() == before
    assert drift([BR], host) == []


def test_bridge_without_segment_and_mtu(host: FakeLinks) -> None:
    ensure_bridges(host, [Bridge("br7", ("10.7.0.1/24",), mtu=1400)])
    assert links(host)["br7"]["mtu"] == 1400
    assert ensure_bridges(host, [Bridge("br7", ("10.7.0.1/24",), mtu=1400)]) == []


def test_foreign_addresses_removed_only_on_our_bridges(host: FakeLinks) -> None:
    host.add_bridge("br100")
    host.add_address("br100", "10.0.0.9/24")  # becomes the primary of 10.0.0.0/24
    host.add_address("br100", "10.0.0.1/24")
    host.add_address("br100", "172.16.0.1/16")
    host.add_bridge("brother")
    host.add_address("brother", "10.0.0.50/24")
    changes = ensure_bridges(host, [BR])
    assert "removed foreign address 10.0.0.9/24 from br100" in changes
    assert "removed foreign address 172.16.0.1/16 from br100" in changes
    assert links(host)["br100"]["addresses"] == ["10.0.0.1/24", "10.0.0.2/24 secondary"]
    assert links(host)["brother"]["addresses"] == ["10.0.0.50/24"]
    assert links(host)["eth0"]["addresses"] == ["192.0.2.1/24"]
    assert ensure_bridges(host, [BR]) == []


def test_first_address_becomes_primary(host: FakeLinks) -> None:
    host.add_bridge("br100")
    host.add_address("br100", "10.0.0.2/24")
    host.add_address("br100", "10.0.0.1/24")
    changes = ensure_bridges(host, [BR])
    assert any(c.startswith("reordered addresses of 10.0.0.0/24 on br100") for c in changes)
    assert links(host)["br100"]["addresses"] == ["10.0.0.1/24", "10.0.0.2/24 secondary"]
    assert ensure_bridges(host, [BR]) == []


def test_addresses_of_several_subnets_converge_in_one_run(host: FakeLinks) -> None:
    b = Bridge("br5", ("10.5.0.1/24", "10.6.0.1/24", "10.5.0.2/24"))
    host.add_bridge("br5")
    host.add_address("br5", "10.6.0.1/24")
    ensure_bridges(host, [b])
    assert links(host)["br5"]["addresses"] == ["10.6.0.1/24", "10.5.0.1/24", "10.5.0.2/24 secondary"]
    assert ensure_bridges(host, [b]) == []
    assert drift([b], host) == []


def test_nic_addresses_and_routes_move_onto_the_bridge() -> None:
    fake = FakeLinks()
    fake.add_nic("eth1")
    fake.add_address("eth1", "198.51.100.10/24")
    fake.add_route("eth1", Route("0.0.0.0/0", gateway="198.51.100.1", metric=100, proto=16))
    fake.add_route("eth1", Route("172.20.0.0/16", gateway="198.51.100.254"))
    b = Bridge("br100", ("10.0.0.1/24",), Segment("nic", "eth1"))
    changes = ensure_bridges(fake, [b])
    assert "moved 198.51.100.10/24 from eth1 to br100" in changes
    d = fake.dump()
    assert d["links"]["eth1"]["master"] == "br100"
    assert d["links"]["eth1"]["addresses"] == []
    assert d["links"]["br100"]["addresses"] == ["10.0.0.1/24", "198.51.100.10/24"]
    assert [(r["dev"], r["dst"], r.get("gateway")) for r in d["routes"]] == [
        ("br100", "0.0.0.0/0", "198.51.100.1"),
        ("br100", "172.20.0.0/16", "198.51.100.254"),
    ]
    # the host's own address stays on a nic bridge: it is not foreign
    assert ensure_bridges(fake, [b]) == []
    assert drift([b], fake) == []


class _RouteRefusingBridge(FakeLinks):
    """A host where the bridge refuses routes, to prove the NIC move is undone."""

    def add_route(self, name: str, route: Route) -> None:
        if name.startswith("br"):
            raise LinkError(f"add route {route.dst} dev {name}: refused")
        super().add_route(name, route)


def test_failed_nic_move_is_undone() -> None:
    fake = _RouteRefusingBridge()
    fake.add_nic("eth1")
    fake.add_address("eth1", "198.51.100.10/24")
    fake.add_route("eth1", Route("0.0.0.0/0", gateway="198.51.100.1"))
    with pytest.raises(LinkError, match="refused"):
        ensure_bridges(fake, [Bridge("br100", ("10.0.0.1/24",), Segment("nic", "eth1"))])
    d = fake.dump()
    assert d["links"]["eth1"]["addresses"] == ["198.51.100.10/24"]
    assert d["links"]["br100"]["addresses"] == ["10.0.0.1/24"]
    assert [(r["dev"], r["dst"]) for r in d["routes"]] == [("eth1", "0.0.0.0/0")]


def test_missing_nic_is_reported(host: FakeLinks) -> None:
    with pytest.raises(ObjectNotFound, match="eth9"):
        ensure_bridges(host, [Bridge("br1", segment=Segment("nic", "eth9"))])


def test_vxlan_remotes_converge(host: FakeLinks) -> None:
    ensure_bridges(host, [BR])
    moved = Bridge(
        BR.name, BR.addresses, Segment("vxlan", "vx100", "eth0", 100, "192.0.2.1", ("192.0.2.3", "192.0.2.4"))
    )
    changes = ensure_bridges(host, [moved])
    assert sorted(changes) == [
        "added flood remote 192.0.2.4 on vx100",
        "removed flood remote 192.0.2.2 from vx100",
    ]
    assert links(host)["vx100"]["fdb"] == ["192.0.2.3", "192.0.2.4"]
    assert ensure_bridges(host, [moved]) == []


def test_vxlan_with_wrong_vni_is_recreated(host: FakeLinks) -> None:
    host.add_vxlan("vx100", vni=7, parent="eth0", local="192.0.2.1", port=4789)
    changes = ensure_bridges(host, [BR])
    assert any(c.startswith("deleted vx100") for c in changes)
    assert links(host)["vx100"]["vni"] == 100
    assert links(host)["vx100"]["master"] == "br100"


def test_vlan_segment_where_the_kernel_has_8021q() -> None:
    fake = FakeLinks(ALL_FEATURES)
    fake.add_nic("eth2")
    b = Bridge("br42", ("10.42.0.1/24",), Segment("vlan", "vlan42", parent="eth2", ident=42))
    ensure_bridges(fake, [b])
    vlan = links(fake)["vlan42"]
    assert (vlan["kind"], vlan["vlan_id"], vlan["parent"], vlan["master"], vlan["up"]) == (
        "vlan",
        42,
        "eth2",
        "br42",
        True,
    )
    assert ensure_bridges(fake, [b]) == []


def test_vlan_segment_without_8021q_is_a_typed_error() -> None:
    fake = FakeLinks(ALL_FEATURES - {"8021q"})
    fake.add_nic("eth2")
    b = Bridge("br42", ("10.42.0.1/24",), Segment("vlan", "vlan42", parent="eth2", ident=42))
    with pytest.raises(KernelFeatureMissing, match="8021q") as err:
        ensure_bridges(fake, [b])
    assert err.value.feature == "8021q"
    assert err.value.code == "kernel_feature_missing"
    assert "vlan42" not in links(fake)


def test_existing_device_with_bridge_name_is_not_touched(host: FakeLinks) -> None:
    host.add_veth("br100", "peer0")
    with pytest.raises(LinkError, match="not a bridge"):
        ensure_bridges(host, [BR])
    assert links(host)["br100"]["kind"] == "veth"


def test_stp_is_switched_off(host: FakeLinks) -> None:
    host.add_bridge("br9")
    host.set_bridge_options("br9", stp=True, forward_delay=1500)
    assert drift([Bridge("br9")], host) == [
        "bridge br9 is down",
        "bridge br9 has STP on",
        "bridge br9 has forward delay 1500",
        "bridge br9 has IPv6 on",
    ]
    ensure_bridges(host, [Bridge("br9")])
    assert (links(host)["br9"]["stp"], links(host)["br9"]["forward_delay"]) == (False, 0)


@pytest.mark.parametrize("name", ["a-very-long-bridge-name", "br 1", "br;rm", ""])
def test_names_are_validated_before_any_change(host: FakeLinks, name: str) -> None:
    before = host.dump()
    with pytest.raises(InvalidInput):
        ensure_bridges(host, [Bridge("br1"), Bridge(name)])
    assert host.dump() == before


# -- remove_bridges ------------------------------------------------------------------------
def test_remove_bridges_is_idempotent(host: FakeLinks) -> None:
    host.add_nic("eth1")
    ensure_bridges(host, [BR, Bridge("br1", segment=Segment("nic", "eth1"))])
    host.add_tap("tapabc")
    host.set_master("tapabc", "br100")
    changes = remove_bridges(host, ["br100", "br1"])
    assert changes == [
        "deleted vxlan vx100",
        "released tapabc from br100",
        "deleted bridge br100",
        "released eth1 from br1",
        "deleted bridge br1",
    ]
    d = links(host)
    assert set(d) == {"lo", "eth0", "eth1", "tapabc"}
    assert "master" not in d["eth1"]
    assert remove_bridges(host, ["br100", "br1"]) == []


def test_remove_refuses_a_non_bridge(host: FakeLinks) -> None:
    with pytest.raises(LinkError, match="not a bridge"):
        remove_bridges(host, ["eth0"])
    assert "eth0" in links(host)


# -- drift ---------------------------------------------------------------------------------
def test_drift_names_the_differences(host: FakeLinks) -> None:
    ensure_bridges(host, [BR])
    host.delete_address("br100", "10.0.0.2/24")
    host.add_address("br100", "10.0.0.77/24")
    host.add_bridge("br7")
    host.set_master("vx100", "br7")
    host.delete_fdb_remote("vx100", "192.0.2.2")
    host.add_fdb_remote("vx100", "192.0.2.99")
    assert drift([BR, Bridge("br200")], host) == [
        "bridge br100 lacks address 10.0.0.2/24",
        "bridge br100 carries foreign address 10.0.0.77/24",
        "vx100 is enslaved to br7, expected br100",
        "vx100 lacks flood remote 192.0.2.2",
        "vx100 floods to stale remote 192.0.2.99",
        "bridge br200 is missing",
    ]
    ensure_bridges(host, [BR])
    assert drift([BR], host) == []


# -- floating IPs (local routes), forwarding, arping -----------------------------------------
def test_local_routes_of_floating_ips(host: FakeLinks) -> None:
    host.set_local_routes("eth0", ["203.0.113.5", "203.0.113.4"], [])
    host.set_local_routes("eth0", ["203.0.113.5"], ["203.0.113.9"])  # present / absent: fine
    assert host.local_routes() == {"eth0": {"203.0.113.4", "203.0.113.5"}}
    assert host.dump()["local"] == {"eth0": ["203.0.113.4", "203.0.113.5"]}
    assert links(host)["eth0"]["addresses"] == ["192.0.2.1/24"]  # no address for them
    host.set_local_routes("eth0", [], ["203.0.113.4"])
    assert host.local_routes() == {"eth0": {"203.0.113.5"}}
    with pytest.raises(ObjectNotFound):
        host.set_local_routes("eth7", ["203.0.113.5"], [])
    host.delete_link("eth0")  # the routes go with their device
    assert host.local_routes() == {}


def test_enable_forwarding(tmp_path: Path) -> None:
    f = tmp_path / "ip_forward"
    f.write_text("0\n")
    assert enable_forwarding(f) is True
    assert f.read_text() == "1\n"
    assert enable_forwarding(f) is False


def test_arping_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "arping"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    assert arping_command("eth0", "203.0.113.5", 2) == [
        str(exe),
        "-U",
        "-c",
        "2",
        "-I",
        "eth0",
        "203.0.113.5",
    ]
    with pytest.raises(InvalidInput):
        arping_command("eth0", "203.0.113.5", 0)
    with pytest.raises(InvalidInput):
        arping_command("eth0", "203.0.113.5; reboot")


# -- fake semantics that the realizer relies on -------------------------------------------------
def test_fake_kernel_semantics(host: FakeLinks) -> None:
    with pytest.raises(ObjectExists):
        host.add_nic("eth0")
    with pytest.raises(ObjectNotFound):
        host.delete_link("nope")
    host.add_bridge("br1")
    host.add_address("br1", "10.1.0.1/24")
    host.add_address("br1", "10.1.0.2/24")
    host.delete_address("br1", "10.1.0.1/24")  # the primary takes its secondary along
    assert host.addresses("br1") == []
    with pytest.raises(LinkError, match="down"):
        host.add_route("br1", Route("0.0.0.0/0", gateway="10.1.0.254"))
    host.set_up("br1")
    with pytest.raises(LinkError, match="unreachable"):
        host.add_route("br1", Route("0.0.0.0/0", gateway="10.1.0.254"))
    with pytest.raises(LinkError):
        host.set_master("eth0", "lo")


# -- VIF plugging ----------------------------------------------------------------------------
def test_plug_netns_is_idempotent_and_unplug_removes_both_ends(host: FakeLinks) -> None:
    ensure_bridges(host, [Bridge("br100", ("10.0.0.1/24",))])
    inst = host.add_namespace("inst1")
    changes = plug_netns("FA:16:3E:00:00:01", "tap0123456789a", "br100", "inst1", mtu=1400, links=host)
    assert "created veth tap0123456789a" in changes
    guest = inst.dump()["links"]["eth0"]
    assert (guest["mac"], guest["mtu"], guest["up"], guest["kind"]) == (
        "fa:16:3e:00:00:01",
        1400,
        True,
        "veth",
    )
    tap = links(host)["tap0123456789a"]
    assert (tap["master"], tap["up"], tap["mtu"]) == ("br100", True, 1400)
    assert not [n for n in links(host) if n.startswith("nvp")]
    assert plug_netns("fa:16:3e:00:00:01", "tap0123456789a", "br100", "inst1", mtu=1400, links=host) == []
    assert unplug("tap0123456789a", links=host) == ["deleted tap0123456789a"]
    assert "eth0" not in inst.dump()["links"]
    assert unplug("tap0123456789a", links=host) == []


def test_plug_netns_failure_leaves_nothing(host: FakeLinks) -> None:
    ensure_bridges(host, [Bridge("br100")])
    inst = host.add_namespace("inst1")
    inst.add_nic("eth0")  # the guest name is taken: the move fails
    with pytest.raises(ObjectExists):
        plug_netns("fa:16:3e:00:00:01", "tapx", "br100", "inst1", links=host)
    assert set(links(host)) == {"lo", "eth0", "br100"}
    with pytest.raises(ObjectNotFound, match="inst9"):
        plug_netns("fa:16:3e:00:00:01", "tapx", "br100", "inst9", links=host)


def test_plug_tap(host: FakeLinks) -> None:
    ensure_bridges(host, [Bridge("br100")])
    assert plug_tap("tapq", "br100", mtu=1450, links=host) == [
        "created tap tapq",
        "set mtu 1450 on tapq",
        "disabled IPv6 on tapq",
        "enslaved tapq to br100",
        "set tapq up",
    ]
    assert plug_tap("tapq", "br100", mtu=1450, links=host) == []
    with pytest.raises(ObjectNotFound):
        plug_tap("tapq", "br404", links=host)


VIF = {
    "id": "0123456789ab-cdef",
    "address": "fa:16:3e:11:22:33",
    "devname": "tap0123456789a",
    "network": {"bridge": "br100", "meta": {"mtu": 1450}},
}


def test_libvirt_xml() -> None:
    el = ET.fromstring(libvirt_xml(VIF))
    assert el.tag == "interface" and el.get("type") == "bridge"
    assert el.find("mac").get("address") == "fa:16:3e:11:22:33"  # type: ignore[union-attr]
    assert el.find("source").get("bridge") == "br100"  # type: ignore[union-attr]
    assert el.find("target").get("dev") == "tap0123456789a"  # type: ignore[union-attr]
    assert el.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    assert el.find("mtu").get("size") == "1450"  # type: ignore[union-attr]
    no_mtu = ET.fromstring(libvirt_xml({**VIF, "network": {"bridge": "br100"}}))
    assert no_mtu.find("mtu") is None


def test_libvirt_xml_rejects_what_would_need_escaping() -> None:
    with pytest.raises(InvalidInput):
        libvirt_xml({**VIF, "network": {"bridge": "br'/><x a='"}})
    with pytest.raises(LinkError):
        libvirt_xml({**VIF, "address": 'fa:16:3e:11:22:33"/>'})


# -- isolation: stable bridge MAC, learning off, IPv6 off ----------------------------------
def test_bridge_keeps_its_own_mac_when_ports_leave(host: FakeLinks) -> None:
    mac = "02:12:34:56:78:9a"
    ensure_bridges(host, [Bridge("br1", mac=mac)])
    host.add_tap("tapa")
    host.set_mac("tapa", "02:00:00:00:00:01")  # lower than the bridge's: would win
    host.set_master("tapa", "br1")
    assert links(host)["br1"]["mac"] == mac
    host.delete_link("tapa")
    assert links(host)["br1"]["mac"] == mac
    assert ensure_bridges(host, [Bridge("br1", mac=mac)]) == []


def test_fake_bridge_without_a_set_mac_follows_its_lowest_port(host: FakeLinks) -> None:
    host.add_bridge("br2")
    for name, mac in (("tapa", "02:00:00:00:00:09"), ("tapb", "02:00:00:00:00:01")):
        host.add_tap(name)
        host.set_mac(name, mac)
        host.set_master(name, "br2")
    assert links(host)["br2"]["mac"] == "02:00:00:00:00:01"
    host.delete_link("tapb")
    assert links(host)["br2"]["mac"] == "02:00:00:00:00:09"  # the gateway MAC just changed
    assert drift([Bridge("br2", mac="02:12:34:56:78:9a")], host)[-2:] == [
        "bridge br2 has mac 02:00:00:00:00:09, expected 02:12:34:56:78:9a",
        "bridge br2 has IPv6 on",
    ]
    changes = ensure_bridges(host, [Bridge("br2", mac="02:12:34:56:78:9a")])
    assert "set mac 02:12:34:56:78:9a on br2" in changes and "disabled IPv6 on br2" in changes


def test_a_learning_vxlan_device_is_replaced(host: FakeLinks) -> None:
    ensure_bridges(host, [BR])
    host._set("vx100", learning=True)  # as an older novanet created it
    assert "vx100 learns remotes from traffic, expected learning off" in drift([BR], host)
    changes = ensure_bridges(host, [BR])
    assert any(c.startswith("deleted vx100 (vx100 learns remotes") for c in changes)
    assert links(host)["vx100"]["learning"] is False
    assert drift([BR], host) == []
