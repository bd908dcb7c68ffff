"""The network info handed to the compute side: VIF -> network -> subnet -> IPs."""

from __future__ import annotations

from typing import Any

from novanet.domain.models import Network
from novanet.domain.netinfo import FixedAddress, VifView, dns_servers, network_info, vif_info


def make_network(**changes: Any) -> Network:
    values: dict[str, Any] = {
        "id": 7,
        "uuid": "11111111-2222-3333-4444-555555555555",
        "label": "private",
        "injected": False,
        "cidr": "10.0.0.0/28",
        "cidr_v6": None,
        "multi_host": False,
        "netmask": "255.255.255.240",
        "gateway": "10.0.0.1",
        "broadcast": "10.0.0.15",
        "dns1": "192.0.2.53",
        "dns2": None,
        "dhcp_start": "10.0.0.2",
        "bridge": "br100",
        "bridge_interface": "eth1",
        "vlan": None,
        "vpn_public_address": None,
        "vpn_public_port": None,
        "vpn_private_address": None,
        "project_id": None,
        "host": "net-host",
        "priority": None,
        "rxtx_base": None,
        "manager": "flatdhcp",
    }
    values.update(changes)
    return Network(**values)


VIF_UUID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def test_vif_info_shape() -> None:
    net = make_network()
    view = VifView(
        VIF_UUID,
        "fa:16:3e:00:00:01",
        net,
        "10.0.0.1",
        "10.0.0.1",
        (FixedAddress("10.0.0.2", ("203.0.113.5",)),),
    )
    info = vif_info(view)
    assert info["id"] == VIF_UUID
    assert info["address"] == "fa:16:3e:00:00:01"
    assert info["type"] == "bridge"
    assert info["devname"] == "tapaaaaaaaa-bb"
    assert len(info["devname"]) <= 14  # leaves room within IFNAMSIZ
    n = info["network"]
    assert n["id"] == net.uuid
    assert n["label"] == "private"
    assert n["bridge"] == "br100"
    assert n["bridge_interface"] == "eth1"
    assert n["vlan"] is None
    assert n["should_create_vlan"] is False
    assert n["multi_host"] is False
    assert n["injected"] is False
    assert n["tenant_id"] is None
    assert n["dhcp"] is True
    assert len(n["subnets"]) == 1
    s = n["subnets"][0]
    assert s["cidr"] == "10.0.0.0/28"
    assert s["netmask"] == "255.255.255.240"
    assert s["broadcast"] == "10.0.0.15"
    assert s["gateway"] == "10.0.0.1"
    assert s["dhcp_server"] == "10.0.0.1"
    assert s["dns"] == ["192.0.2.53"]
    assert s["version"] == 4
    assert s["ips"] == [
        {
            "address": "10.0.0.2",
            "type": "fixed",
            "version": 4,
            "prefixlen": 28,
            "floating_ips": [{"address": "203.0.113.5", "type": "floating"}],
        }
    ]


def test_vlan_network_and_flat_without_dhcp() -> None:
    vlan = vif_info(
        VifView(VIF_UUID, "m", make_network(vlan=102, manager="vlan", project_id="p"), None, None)
    )
    assert vlan["network"]["should_create_vlan"] is True
    assert vlan["network"]["vlan"] == 102
    assert vlan["network"]["tenant_id"] == "p"
    assert vlan["network"]["subnets"][0]["ips"] == []
    flat = vif_info(VifView(VIF_UUID, "m", make_network(manager="flat"), "10.0.0.1", None))
    assert flat["network"]["dhcp"] is False
    assert flat["network"]["subnets"][0]["dhcp_server"] is None


def test_dns_servers_skip_missing() -> None:
    assert dns_servers(make_network(dns1=None, dns2=None)) == []
    assert dns_servers(make_network(dns1="192.0.2.1", dns2="192.0.2.2")) == ["192.0.2.1", "192.0.2.2"]
    assert dns_servers(make_network(dns1=None, dns2="192.0.2.2")) == ["192.0.2.2"]


def test_network_info_keeps_vif_order() -> None:
    a = VifView("a" * 8 + VIF_UUID[8:], "m1", make_network(), "10.0.0.1", "10.0.0.1")
    b = VifView("b" * 8 + VIF_UUID[8:], "m2", make_network(id=8, cidr="10.0.1.0/28"), "10.0.1.1", "10.0.1.1")
    assert [v["address"] for v in network_info([a, b])] == ["m1", "m2"]
    assert network_info([]) == []


def test_public_uses_the_original_column_names() -> None:
    pub = make_network().public()
    for key in (
        "uuid",
        "label",
        "cidr",
        "netmask",
        "gateway",
        "broadcast",
        "dhcp_start",
        "bridge",
        "bridge_interface",
        "vlan",
        "vpn_private_address",
        "vpn_public_address",
        "vpn_public_port",
        "multi_host",
        "dns1",
        "dns2",
        "project_id",
        "host",
        "injected",
        "priority",
    ):
        assert key in pub
    assert pub["cidr"] == "10.0.0.0/28"
