"""The three network managers and how they are named in configuration."""

from __future__ import annotations

import pytest

from novanet.domain.errors import ConfigError
from novanet.domain.modes import FLAT, FLATDHCP, MODES, VLAN, mode_from_name


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("flat", FLAT),
        ("flatdhcp", FLATDHCP),
        ("vlan", VLAN),
        ("FlatManager", FLAT),
        ("FlatDHCPManager", FLATDHCP),
        ("VlanManager", VLAN),
        ("nova.network.manager.FlatManager", FLAT),
        ("nova.network.manager.FlatDHCPManager", FLATDHCP),
        ("nova.network.manager.VlanManager", VLAN),
        ("VLAN", VLAN),
        (" flatdhcp ", FLATDHCP),
    ],
)
def test_mode_from_name_accepts(name: str, mode: object) -> None:
    assert mode_from_name(name) is mode


@pytest.mark.parametrize(
    "name",
    [
        "",
        "bogus",
        "flatvlan",
        "neutron",
        "nova.network.manager.NeutronManager",
        "nova.network.manager.Bogus",
        "nova.network.quantumv2.api.API",
        "nova.network.manager",
    ],
)
def test_mode_from_name_refuses(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown network manager"):
        mode_from_name(name)


def test_class_paths_are_the_originals() -> None:
    assert FLAT.class_path == "nova.network.manager.FlatManager"
    assert FLATDHCP.class_path == "nova.network.manager.FlatDHCPManager"
    assert VLAN.class_path == "nova.network.manager.VlanManager"
    for m in MODES.values():
        assert mode_from_name(m.class_path) is m
        assert mode_from_name(m.name) is m


def test_mode_traits() -> None:
    assert not FLAT.dhcp and FLAT.frees_address_at_once and not FLAT.vlan
    assert FLATDHCP.dhcp and not FLATDHCP.frees_address_at_once and not FLATDHCP.vlan
    assert VLAN.dhcp and VLAN.vlan and VLAN.per_project_networks
    assert not FLAT.per_project_networks and not FLATDHCP.per_project_networks
    assert FLAT.injected_default and not FLATDHCP.injected_default
    assert set(MODES) == {"flat", "flatdhcp", "vlan"}
