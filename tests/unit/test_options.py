"""Options of the original: implemented (dns_server, use_network_dns_servers) or refused
when an agent starts with them set (use_single_default_gateway, forward_bridge_interface,
dhcpbridge); none accepted and silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_screen import net

from novanet import config as C
from novanet.domain.errors import ConfigError
from novanet.host.desired import _dns_servers


def conf(tmp_path: Path, text: str) -> C.Config:
    p = tmp_path / "nova.conf"
    p.write_text("[DEFAULT]\n" + text)
    return C.load([str(p)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("8.8.4.4",)),
        ("dns_server = 192.0.2.53\n", ("192.0.2.53",)),
        (
            "dns_server = 192.0.2.53, 192.0.2.54\nuse_network_dns_servers = True\n",
            ("192.0.2.53", "192.0.2.54", "8.8.4.4", "1.1.1.1"),
        ),
        ("use_network_dns_servers = True\n", ("8.8.4.4", "1.1.1.1")),
    ],
)
def test_dns_servers_handed_to_guests(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    assert (
        _dns_servers(
            net(dns1="8.8.4.4", dns2="1.1.1.1") if "use_network" in text else net(), conf(tmp_path, text)
        )
        == expected
    )


def test_a_bad_dns_server_is_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"option dns_server: '8\.8\.8' is not an IPv4 address"):
        conf(tmp_path, "dns_server = 8.8.8\n")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("use_single_default_gateway = True\n", "use_single_default_gateway"),
        ("forward_bridge_interface = eth0\n", "forward_bridge_interface"),
        ("dhcpbridge = /usr/bin/nova-dhcpbridge\n", "dhcpbridge"),
    ],
)
def test_unsupported_options_are_refused_at_start(tmp_path: Path, text: str, name: str) -> None:
    cfg = conf(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        C.check_supported(cfg)
    assert str(err.value).startswith(f"option {name} = ") and "\n" not in str(err.value)


def test_defaults_and_explicit_defaults_pass(tmp_path: Path) -> None:
    C.check_supported(conf(tmp_path, ""))
    C.check_supported(conf(tmp_path, "use_single_default_gateway = False\nforward_bridge_interface = all\n"))
