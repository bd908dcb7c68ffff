"""nova.conf-compatible configuration: names, defaults, parsing and precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from novanet import config as C
from novanet.domain.errors import ConfigError
from novanet.domain.modes import FLAT, FLATDHCP, VLAN


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# Reference section 1: name -> default, for every option whose default is a plain value.
REFERENCE_DEFAULTS = {
    "multi_host": False,
    "flat_network_bridge": None,
    "flat_interface": None,
    "flat_injected": False,
    "flat_network_dns": "8.8.4.4",
    "vlan_start": 100,
    "vlan_interface": None,
    "num_networks": 1,
    "network_size": 256,
    "vpn_start": 1000,
    "cnt_vpn_clients": 0,
    "fixed_ip_disassociate_timeout": 600,
    "create_unique_mac_address_attempts": 5,
    "force_dhcp_release": True,  # Havana's default
    "share_dhcp_address": False,
    "teardown_unused_network_gateway": False,
    "dhcp_domain": "novalocal",
    "default_floating_pool": "nova",
    "auto_assign_floating_ip": False,
    "quota_floating_ips": 10,
    "quota_fixed_ips": -1,
    "public_interface": "eth0",
    "dmz_cidr": (),
    "force_snat_range": (),
    "dhcp_lease_time": 120,
    "dnsmasq_config_file": "",
    "dns_server": (),
    "use_network_dns_servers": False,
    "send_arp_for_ha": False,
    "send_arp_for_ha_count": 3,
    "use_single_default_gateway": False,
    "metadata_port": 8775,
    "network_device_mtu": None,
    "forward_bridge_interface": ("all",),
}


def test_defaults_are_the_originals() -> None:
    cfg = C.load()
    got = {name: getattr(cfg, name) for name in REFERENCE_DEFAULTS}
    assert got == REFERENCE_DEFAULTS
    assert cfg.network_manager is VLAN  # VlanManager is the original's default


def test_my_ip_defaults_follow_my_ip() -> None:
    cfg = C.load(overrides={"my_ip": "192.0.2.77", "state_path": "/srv/nn"})
    assert cfg.effective_vpn_ip == "192.0.2.77"
    assert cfg.effective_routing_source_ip == "192.0.2.77"
    assert cfg.effective_metadata_host == "192.0.2.77"
    assert cfg.effective_networks_path == "/srv/nn/networks"
    assert cfg.database_url == "sqlite:////srv/nn/novanet.sqlite"


def test_network_host_defaults_to_host() -> None:
    assert C.load(overrides={"host": "node1"}).effective_network_host == "node1"
    cfg = C.load(overrides={"host": "node1", "network_host": "netnode"})
    assert cfg.effective_network_host == "netnode"


def test_reads_options_from_default_section(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        """
[DEFAULT]
network_manager = nova.network.manager.FlatDHCPManager
flat_network_bridge = br100
flat_interface = eth1
vlan_start = 200
network_size = 64
fixed_ip_disassociate_timeout = 30
default_floating_pool = public
public_interface = eth2
dhcp_domain = example.org
""",
    )
    cfg = C.load([conf])
    assert cfg.network_manager is FLATDHCP
    assert cfg.flat_network_bridge == "br100"
    assert cfg.flat_interface == "eth1"
    assert cfg.vlan_start == 200
    assert cfg.network_size == 64
    assert cfg.fixed_ip_disassociate_timeout == 30
    assert cfg.default_floating_pool == "public"
    assert cfg.public_interface == "eth2"
    assert cfg.dhcp_domain == "example.org"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("True", True), ("False", False), ("true", True), ("false", False), ("1", True), ("0", False)],
)
def test_booleans(tmp_path: Path, raw: str, value: bool) -> None:
    conf = write(tmp_path, "nova.conf", f"[DEFAULT]\nmulti_host = {raw}\nforce_dhcp_release = {raw}\n")
    cfg = C.load([conf])
    assert cfg.multi_host is value
    assert cfg.force_dhcp_release is value


def test_lists_comma_separated(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\ndmz_cidr = 10.128.0.0/24, 10.129.0.0/24\nforward_bridge_interface = eth1\n"
        "dns_server = 192.0.2.53\n",
    )
    cfg = C.load([conf])
    assert cfg.dmz_cidr == ("10.128.0.0/24", "10.129.0.0/24")
    assert cfg.forward_bridge_interface == ("eth1",)
    assert cfg.dns_server == ("192.0.2.53",)


def test_multi_valued_options_repeated_lines(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\ndns_server = 192.0.2.53\ndns_server = 198.51.100.53\n"
        "force_snat_range = 0.0.0.0/0\nforce_snat_range = 10.0.0.0/8\n",
    )
    cfg = C.load([conf])
    assert cfg.dns_server == ("192.0.2.53", "198.51.100.53")
    assert cfg.force_snat_range == ("0.0.0.0/0", "10.0.0.0/8")


def test_my_ip_substitution(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\nmy_ip = 192.0.2.5\nvpn_ip = $my_ip\nrouting_source_ip = ${my_ip}\n"
        "metadata_host = $my_ip\nstate_path = /srv/novanet\nnetworks_path = $state_path/nets\n",
    )
    cfg = C.load([conf])
    assert cfg.vpn_ip == "192.0.2.5"
    assert cfg.routing_source_ip == "192.0.2.5"
    assert cfg.metadata_host == "192.0.2.5"
    assert cfg.effective_networks_path == "/srv/novanet/nets"


def test_substitution_reference_defined_in_an_earlier_file(tmp_path: Path) -> None:
    first = write(tmp_path, "a.conf", "[DEFAULT]\nmy_ip = 192.0.2.6\n")
    second = write(tmp_path, "b.conf", "[DEFAULT]\nvpn_ip = $my_ip\n")
    assert C.load([first, second]).vpn_ip == "192.0.2.6"


def test_later_files_win(tmp_path: Path) -> None:
    first = write(tmp_path, "a.conf", "[DEFAULT]\nvlan_start = 200\nvpn_start = 2000\n")
    second = write(tmp_path, "b.conf", "[DEFAULT]\nvlan_start = 300\n")
    cfg = C.load([first, second])
    assert cfg.vlan_start == 300
    assert cfg.vpn_start == 2000  # not repeated in the later file: kept


def test_database_connection_section(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[database]\nconnection = sqlite:////tmp/x.sqlite\n")
    cfg = C.load([conf])
    assert cfg.connection == "sqlite:////tmp/x.sqlite"
    assert cfg.database_url == "sqlite:////tmp/x.sqlite"


def test_sql_connection_in_default(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[DEFAULT]\nsql_connection = postgresql+psycopg://u:p@db/nova\n")
    assert C.load([conf]).database_url == "postgresql+psycopg://u:p@db/nova"


def test_database_section_wins_over_deprecated_sql_connection(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[database]\nconnection = sqlite:////tmp/new.sqlite\n[DEFAULT]\nsql_connection = sqlite:////tmp/old\n",
    )
    assert C.load([conf]).connection == "sqlite:////tmp/new.sqlite"


def test_unknown_options_and_sections_ignored(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\nrpc_backend = rabbit\nvlan_start = 150\n"
        "[libvirt]\nvirt_type = kvm\nvlan_start = 999\n[keystone_authtoken]\nauth_uri = http://x\n",
    )
    cfg = C.load([conf])
    assert cfg.vlan_start == 150
    assert not hasattr(cfg, "compute_driver")


@pytest.mark.parametrize(
    "line",
    [
        "multi_host = maybe",
        "force_dhcp_release = yes please",
        "vlan_start = one hundred",
        "network_size = 2.5",
        "quota_floating_ips = ",
        "network_manager = nova.network.manager.NeutronManager",
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, line: str) -> None:
    conf = write(tmp_path, "nova.conf", f"[DEFAULT]\n{line}\n")
    with pytest.raises(ConfigError):
        C.load([conf])


def test_bad_value_message_names_the_option(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[DEFAULT]\nvlan_start = abc\n")
    with pytest.raises(ConfigError, match="vlan_start"):
        C.load([conf])


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        C.load([str(tmp_path / "absent.conf")])
    broken = write(tmp_path, "broken.conf", "vlan_start = 3\n[DEFAULT\n")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        C.load([broken])


def test_overrides_win_over_files(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "nova.conf",
        "[DEFAULT]\nnetwork_manager = VlanManager\nvlan_start = 200\nmulti_host = False\n"
        "[database]\nconnection = sqlite:////tmp/file.sqlite\n",
    )
    cfg = C.load(
        [conf],
        overrides={
            "network_manager": "flat",
            "vlan_start": 300,
            "multi_host": "True",
            "connection": "sqlite:////tmp/flag.sqlite",
            "vpn_start": None,  # None = flag not given: the file/default stays
        },
    )
    assert cfg.network_manager is FLAT
    assert cfg.vlan_start == 300
    assert cfg.multi_host is True
    assert cfg.connection == "sqlite:////tmp/flag.sqlite"
    assert cfg.vpn_start == 1000


def test_override_strings_are_converted_and_checked() -> None:
    cfg = C.load(overrides={"quota_fixed_ips": "5", "force_dhcp_release": "False", "dmz_cidr": "a,b"})
    assert cfg.quota_fixed_ips == 5
    assert cfg.force_dhcp_release is False
    assert cfg.dmz_cidr == ("a", "b")
    with pytest.raises(ConfigError, match="quota_fixed_ips"):
        C.load(overrides={"quota_fixed_ips": "lots"})


def test_unknown_override_refused() -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        C.load(overrides={"no_such_option": "1"})


def test_network_device_mtu(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[DEFAULT]\nnetwork_device_mtu = 1450\n")
    assert C.load([conf]).network_device_mtu == 1450
    conf = write(tmp_path, "nova2.conf", "[DEFAULT]\nnetwork_device_mtu = None\n")
    assert C.load([conf]).network_device_mtu is None


def test_none_spelled_for_optional_names(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[DEFAULT]\nflat_network_bridge = None\nvlan_interface =\n")
    cfg = C.load([conf])
    assert cfg.flat_network_bridge is None
    assert cfg.vlan_interface is None


def test_substitution_sees_overridden_value(tmp_path: Path) -> None:
    conf = write(tmp_path, "nova.conf", "[DEFAULT]\nvpn_ip = $my_ip\n")
    cfg = C.load([conf], overrides={"my_ip": "192.0.2.99"})
    assert cfg.my_ip == "192.0.2.99"
    assert cfg.vpn_ip == "192.0.2.99"
