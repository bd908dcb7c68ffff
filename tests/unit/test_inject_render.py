"""Rendering of the injected interfaces file and the config drive's JSON documents."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_netinfo import make_network

from novanet.domain.errors import InvalidInput
from novanet.domain.netinfo import FixedAddress, VifView, network_info
from novanet.inject import disk, render, tree
from novanet.inject.ext4 import guest_path

# The fields of OpenStack's network_data.json (nova's metadata "network_data" document,
# as cloud-init's and Glean's readers consume it) that novanet emits.
IPV4 = {"type": "string", "pattern": r"^(\d{1,3}\.){3}\d{1,3}$"}
NETWORK_DATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["links", "networks", "services"],
    "additionalProperties": False,
    "properties": {
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "type", "ethernet_mac_address"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "vif_id": {"type": "string"},
                    "type": {"enum": ["bridge", "phy", "ovs", "tap", "vif", "vhostuser", "vlan"]},
                    "ethernet_mac_address": {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"},
                    "mtu": {"type": ["integer", "null"]},
                },
            },
        },
        "networks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "type", "link"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "type": {"enum": ["ipv4", "ipv4_dhcp", "ipv6", "ipv6_dhcp", "ipv6_slaac"]},
                    "link": {"type": "string"},
                    "network_id": {"type": "string"},
                    "ip_address": IPV4,
                    "netmask": IPV4,
                    "routes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["network", "netmask", "gateway"],
                            "additionalProperties": False,
                            "properties": {"network": IPV4, "netmask": IPV4, "gateway": IPV4},
                        },
                    },
                    "services": {"$ref": "#/$defs/services"},
                },
                "if": {"properties": {"type": {"const": "ipv4"}}},
                "then": {"required": ["ip_address", "netmask", "routes"]},
            },
        },
        "services": {"$ref": "#/$defs/services"},
    },
    "$defs": {
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "address"],
                "additionalProperties": False,
                "properties": {"type": {"const": "dns"}, "address": IPV4},
            },
        }
    },
}


def vif(n: int, *, injected: bool, manager: str = "flat", dns2: str | None = None) -> VifView:
    net = make_network(
        id=n,
        uuid=f"00000000-0000-0000-0000-00000000000{n}",
        injected=injected,
        cidr=f"10.{n}.0.0/24",
        netmask="255.255.255.0",
        gateway=f"10.{n}.0.1",
        broadcast=f"10.{n}.0.255",
        dns2=dns2,
        manager=manager,
    )
    return VifView(
        uuid=f"aaaaaaaa-0000-0000-0000-00000000000{n}",
        mac=f"fa:16:3e:00:00:0{n}",
        network=net,
        gateway=f"10.{n}.0.1",
        dhcp_server=None if manager == "flat" else f"10.{n}.0.1",
        fixed=(FixedAddress(f"10.{n}.0.5"),),
    )


def test_interfaces_one_nic() -> None:
    text = render.interfaces(network_info([vif(1, injected=True)]))
    assert text is not None
    assert text.endswith(
        "auto lo\niface lo inet loopback\n\n"
        "auto eth0\niface eth0 inet static\n"
        "    address 10.1.0.5\n    netmask 255.255.255.0\n    broadcast 10.1.0.255\n"
        "    gateway 10.1.0.1\n    dns-nameservers 192.0.2.53\n"
    )
    assert text.startswith("# Injected by novanet")


def test_interfaces_two_nics_one_gateway() -> None:
    info = network_info([vif(1, injected=True), vif(2, injected=True, dns2="198.51.100.53")])
    single = render.interfaces(info, single_gateway=True)
    assert single is not None
    assert single.count("gateway ") == 1
    eth1 = single[single.index("auto eth1") :]
    assert "gateway" not in eth1
    assert "    address 10.2.0.5\n" in eth1 and "dns-nameservers 192.0.2.53 198.51.100.53" in eth1
    both = render.interfaces(info, single_gateway=False)
    assert both is not None and both.count("    gateway ") == 2


def test_interfaces_numbering_follows_vif_order() -> None:
    info = network_info([vif(1, injected=False), vif(2, injected=True)])
    text = render.interfaces(info)
    assert text is not None
    assert "auto eth1\n" in text and "eth0" not in text


def test_interfaces_no_injected_network() -> None:
    assert render.interfaces(network_info([vif(1, injected=False)])) is None
    assert render.interfaces([]) is None


def test_interfaces_refuses_a_bad_value_from_the_database() -> None:
    info = network_info([vif(1, injected=True)])
    info[0]["network"]["subnets"][0]["gateway"] = "10.1.0.1\n    up rm -rf /"
    with pytest.raises(InvalidInput):
        render.interfaces(info)


def test_network_data_matches_the_published_format() -> None:
    info = network_info(
        [vif(1, injected=True), vif(2, injected=False, manager="flatdhcp", dns2="198.51.100.53")]
    )
    doc = render.network_data(info)
    jsonschema.validate(doc, NETWORK_DATA_SCHEMA)
    assert [link["ethernet_mac_address"] for link in doc["links"]] == [
        "fa:16:3e:00:00:01",
        "fa:16:3e:00:00:02",
    ]
    static, dhcp = doc["networks"]
    assert static["type"] == "ipv4" and static["ip_address"] == "10.1.0.5"
    assert static["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.0.1"}]
    assert static["link"] == doc["links"][0]["id"]
    assert dhcp == {
        "id": "network1",
        "type": "ipv4_dhcp",
        "link": doc["links"][1]["id"],
        "network_id": "00000000-0000-0000-0000-000000000002",
    }
    assert doc["services"] == [
        {"type": "dns", "address": "192.0.2.53"},
        {"type": "dns", "address": "198.51.100.53"},
    ]


def test_network_data_flat_network_is_static_even_when_not_injected() -> None:
    doc = render.network_data(network_info([vif(1, injected=False, manager="flat")]))
    jsonschema.validate(doc, NETWORK_DATA_SCHEMA)
    assert doc["networks"][0]["type"] == "ipv4"


def test_network_data_single_default_route() -> None:
    info = network_info([vif(1, injected=True), vif(2, injected=True)])
    doc = render.network_data(info, single_gateway=True)
    jsonschema.validate(doc, NETWORK_DATA_SCHEMA)
    assert [len(n["routes"]) for n in doc["networks"]] == [1, 0]


def test_meta_data() -> None:
    uuid = "11111111-2222-3333-4444-555555555555"
    assert render.meta_data(uuid, "vm1")["hostname"] == "vm1"
    assert render.meta_data(uuid, None)["hostname"] == f"server-{uuid}"
    with pytest.raises(InvalidInput):
        render.meta_data(uuid, "bad name\n")


# --- partition tables -------------------------------------------------------------------


def mbr(*entries: tuple[int, int, int]) -> bytes:
    sector = bytearray(512)
    for i, (ptype, start, count) in enumerate(entries):
        off = 446 + 16 * i
        sector[off + 4] = ptype
        struct.pack_into("<II", sector, off + 8, start, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def test_mbr_partitions() -> None:
    img = mbr((0x83, 2048, 4096), (0, 0, 0), (0x83, 8192, 100)) + bytes(512 * 9000)
    parts = disk.partitions(io.BytesIO(img))
    assert [(p.number, p.offset, p.size) for p in parts] == [
        (1, 2048 * 512, 4096 * 512),
        (3, 8192 * 512, 51200),
    ]
    with pytest.raises(InvalidInput, match="no partition 2"):
        disk.find(io.BytesIO(img), 2, len(img))
    with pytest.raises(InvalidInput, match="past the end"):
        disk.find(io.BytesIO(img), 1, 1024)


def test_gpt_partitions() -> None:
    img = bytearray(mbr((0xEE, 1, 0xFFFFFFFF)) + bytes(512 * 40))
    header = bytearray(92)
    header[:8] = b"EFI PART"
    struct.pack_into("<QII", header, 72, 2, 4, 128)
    img[512 : 512 + 92] = header
    entry = bytearray(128)
    entry[:16] = b"\x01" * 16
    struct.pack_into("<QQ", entry, 32, 34, 40)
    img[1024 + 128 : 1024 + 256] = entry  # the second entry; the first is unused
    parts = disk.partitions(io.BytesIO(bytes(img)))
    assert [(p.number, p.offset, p.size) for p in parts] == [(2, 34 * 512, 7 * 512)]


def test_no_partition_table() -> None:
    assert disk.partitions(io.BytesIO(bytes(4096))) == []


# --- directory trees ----------------------------------------------------------------------


def test_guest_path_refuses_escapes() -> None:
    assert str(guest_path("/etc/network/interfaces")) == "/etc/network/interfaces"
    for bad in ("/etc/../../x", "/etc/./x", "/etc/", "/etc/a b"):
        with pytest.raises(InvalidInput):
            guest_path(bad)


def test_tree_write_creates_and_keeps_mode(tmp_path: Path) -> None:
    w = tree.write_file(tmp_path, "/etc/network/interfaces", b"one\n")
    target = tmp_path / "etc/network/interfaces"
    assert target.read_bytes() == b"one\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert w.mode == 0o644
    target.chmod(0o600)
    tree.write_file(tmp_path, "/etc/network/interfaces", b"two\n")
    assert target.read_bytes() == b"two\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(tmp_path / "etc/network")) == ["interfaces"]  # no temporary left


def test_tree_refuses_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(InvalidInput, match="symlink"):
        tree.write_file(root, "/etc/network/interfaces", b"x")
    assert list(outside.iterdir()) == []
    (root / "etc").unlink()
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").symlink_to(outside / "victim")
    with pytest.raises(InvalidInput, match="symlink"):
        tree.write_file(root, "/etc/network/interfaces", b"x")
    assert not (outside / "victim").exists()
