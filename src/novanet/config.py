"""nova.conf-compatible configuration: the original option names and defaults, typed.

Read once by an entry point (CLI, agent, API) and passed down; nothing below the entry
points reads configuration on its own.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from novanet.domain.errors import ConfigError
from novanet.domain.modes import VLAN, Mode, mode_from_name


def _default_host() -> str:
    return socket.gethostname() or "localhost"


def _default_my_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _default_state_path() -> str:
    if os.geteuid() == 0:
        return "/var/lib/novanet"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "novanet")


@dataclass(frozen=True)
class Config:
    """Every option novanet reads, with the original's name and default."""

    # managers and wiring
    network_manager: Mode = VLAN
    multi_host: bool = False
    host: str = field(default_factory=_default_host)
    my_ip: str = field(default_factory=_default_my_ip)
    state_path: str = field(default_factory=_default_state_path)
    network_host: str = ""  # empty: the host option
    # networks
    flat_network_bridge: str | None = None
    flat_interface: str | None = None
    flat_injected: bool = False
    flat_network_dns: str = "8.8.4.4"
    vlan_start: int = 100
    vlan_interface: str | None = None
    num_networks: int = 1
    network_size: int = 256
    vpn_ip: str = ""  # empty: my_ip
    vpn_start: int = 1000
    cnt_vpn_clients: int = 0
    # cloudpipe certificates (the original's crypto options)
    use_project_ca: bool = False
    ca_path: str = ""  # empty: $state_path/CA
    keys_path: str = ""  # empty: $ca_path/keys
    ca_file: str = "cacert.pem"
    key_file: str = "private/cakey.pem"
    crl_file: str = "crl.pem"
    vpn_ca_validity_days: int = 3650
    vpn_cert_validity_days: int = 365
    vpn_crl_validity_days: int = 30
    vpn_auto_start: bool = True  # the agent runs each served project's VPN appliance
    fixed_range: str = ""
    fixed_ip_disassociate_timeout: int = 600
    create_unique_mac_address_attempts: int = 5
    force_dhcp_release: bool = True
    share_dhcp_address: bool = False
    teardown_unused_network_gateway: bool = False
    dhcp_domain: str = "novalocal"
    # floating IPs and quotas
    default_floating_pool: str = "nova"
    auto_assign_floating_ip: bool = False
    quota_floating_ips: int = 10
    quota_fixed_ips: int = -1
    # host (linux_net)
    public_interface: str = "eth0"
    routing_source_ip: str = ""  # empty: my_ip
    dmz_cidr: tuple[str, ...] = ()
    force_snat_range: tuple[str, ...] = ()
    dhcpbridge: str = "novanet-dhcpbridge"
    dhcp_lease_time: int = 120
    dnsmasq_config_file: str = ""
    dns_server: tuple[str, ...] = ()
    use_network_dns_servers: bool = False
    networks_path: str = ""  # empty: $state_path/networks
    send_arp_for_ha: bool = False
    send_arp_for_ha_count: int = 3
    use_single_default_gateway: bool = False
    metadata_host: str = ""  # empty: my_ip
    metadata_port: int = 8775
    network_device_mtu: int | None = None
    forward_bridge_interface: tuple[str, ...] = ("all",)
    # novanet's own (no nova-network equivalent)
    # How VLAN-mode networks leave the host: "vlan" (802.1Q on vlan_interface) or "vxlan"
    # (VNI = the network's VLAN id, over vxlan_interface, peers from the hosts table).
    vlan_segmentation: str = "vlan"
    vxlan_interface: str | None = None
    vxlan_local_ip: str = ""  # empty: my_ip
    vxlan_port: int = 4789
    agent_poll_interval: float = 0.01  # seconds between change-log polls (SQLite)
    agent_resync_interval: int = 60  # seconds between full drift-repairing syncs
    # services: heartbeats (nova's report_interval / service_down_time)
    report_interval: int = 10  # seconds between an agent's heartbeats
    service_down_time: int = 60  # a heartbeat older than this: the agent is down
    # REST API ([api] listen / listen_port / workers; nova's osapi_compute_* in [DEFAULT])
    api_listen: str = "127.0.0.1"
    api_listen_port: int = 8774
    api_workers: int = 1
    api_max_request_body_size: int = 114688  # bytes (nova's osapi_max_request_body_size, 112 KiB)
    api_group_commit: int = 64  # most allocate/deallocate requests one transaction takes; 1: off
    api_token_cache_seconds: float = 2.0  # how long a process trusts a verified token; 0: off
    # database
    connection: str = ""  # [database] connection; empty: SQLite under state_path

    @property
    def effective_network_host(self) -> str:
        return self.network_host or self.host

    @property
    def effective_vpn_ip(self) -> str:
        return self.vpn_ip or self.my_ip

    @property
    def effective_ca_path(self) -> str:
        return self.ca_path or str(Path(self.state_path) / "CA")

    @property
    def effective_keys_path(self) -> str:
        return self.keys_path or str(Path(self.effective_ca_path) / "keys")

    @property
    def effective_routing_source_ip(self) -> str:
        return self.routing_source_ip or self.my_ip

    @property
    def effective_metadata_host(self) -> str:
        return self.metadata_host or self.my_ip

    @property
    def effective_networks_path(self) -> str:
        return self.networks_path or str(Path(self.state_path) / "networks")

    @property
    def effective_vxlan_local_ip(self) -> str:
        return self.vxlan_local_ip or self.my_ip

    @property
    def database_url(self) -> str:
        if self.connection:
            return self.connection
        return "sqlite:///" + str(Path(self.state_path) / "novanet.sqlite")


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}

# The original's [DEFAULT] spelling of options that live elsewhere here.
_RENAMED = {
    "sql_connection": "connection",
    "osapi_compute_listen": "api_listen",
    "osapi_compute_listen_port": "api_listen_port",
    "osapi_compute_workers": "api_workers",
    "osapi_max_request_body_size": "api_max_request_body_size",
}
# [api] options, read as api_<name>.
_API_SECTION = (
    "listen",
    "listen_port",
    "workers",
    "max_request_body_size",
    "group_commit",
    "token_cache_seconds",
)
_SUBST = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _to_bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"option {name}: {raw!r} is not a boolean (use True or False)")


def _to_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"option {name}: {raw!r} is not an integer") from None


def _to_list(raw: str) -> tuple[str, ...]:
    parts = [p.strip() for chunk in raw.splitlines() for p in chunk.split(",")]
    return tuple(p for p in parts if p)


def _convert(name: str, raw: str) -> Any:
    default = _DEFAULTS[name]
    if name == "network_manager":
        return mode_from_name(raw)
    if isinstance(default, bool):
        return _to_bool(name, raw)
    if name == "network_device_mtu":
        return _to_int(name, raw) if raw.strip() not in ("", "None") else None
    if isinstance(default, int):
        return _to_int(name, raw)
    if isinstance(default, tuple):
        return _to_list(raw)
    if isinstance(default, float):
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(f"option {name}: {raw!r} is not a number") from None
    if default is None or name in (
        "flat_network_bridge",
        "flat_interface",
        "vlan_interface",
        "vxlan_interface",
    ):
        value = raw.strip()
        return None if value in ("", "None") else value
    return raw.strip()


_DEFAULTS: dict[str, Any] = {}
for _f in fields(Config):
    _DEFAULTS[_f.name] = None  # filled below from an instance, default factories included


def _substitute(values: Mapping[str, str], raw: str, depth: int = 0) -> str:
    """oslo.config style ``$option`` references to other options."""
    if depth > 10:
        raise ConfigError(f"option value {raw!r}: references nest too deep")

    def repl(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        if key in values:
            return _substitute(values, values[key], depth + 1)
        if key in _DEFAULTS and _DEFAULTS[key] is not None:
            d = _DEFAULTS[key]
            return d.name if isinstance(d, Mode) else str(d)
        return m.group(0)

    return _SUBST.sub(repl, raw)


def read_files(paths: Iterable[str]) -> dict[str, str]:
    """Raw option values from nova.conf files, later files winning, [DEFAULT] and [database]."""
    raw: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ConfigError(f"config file {p} does not exist or is not a file")
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
        except (configparser.Error, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"config file {p} cannot be parsed: {first}") from None
        for key, value in parser.defaults().items():
            raw[_RENAMED.get(key, key)] = value
        # oslo.config's multi-valued options may repeat a line per value; configparser
        # keeps only the last one, so read those again from the text.
        for key, values in _repeated(path.read_text(encoding="utf-8")).items():
            raw[key] = "\n".join(values)
        if parser.has_section("database") and parser.has_option("database", "connection"):
            raw["connection"] = parser.get("database", "connection")
        for key in _API_SECTION:
            if parser.has_section("api") and parser.has_option("api", key):
                raw[f"api_{key}"] = parser.get("api", key)
    return raw


_MULTI = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*(.*?)\s*$")


def _repeated(text: str) -> dict[str, list[str]]:
    """Values of list options given on several lines of [DEFAULT]."""
    found: dict[str, list[str]] = {}
    section = "DEFAULT"
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        m = _MULTI.match(line)
        if section == "DEFAULT" and m and isinstance(_DEFAULTS.get(m.group(1)), tuple):
            found.setdefault(m.group(1), []).append(m.group(2))
    return {k: v for k, v in found.items() if len(v) > 1}


def load(config_files: Iterable[str] = (), overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the configuration from nova.conf files, then explicit overrides (CLI flags)."""
    raw = read_files(config_files)
    typed: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _DEFAULTS:
            raise ConfigError(f"unknown option {key}")
        if isinstance(value, str):
            raw[key] = value  # also seen by $references in the files
        else:
            typed[key] = value
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _DEFAULTS:
            continue  # nova.conf holds many options of other services
        values[key] = _convert(key, _substitute(raw, value))
    values.update(typed)
    try:
        cfg = replace(Config(), **values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 <= cfg.api_token_cache_seconds <= 3600:
        raise ConfigError(
            f"option [api] token_cache_seconds: {cfg.api_token_cache_seconds} is not between 0 and 3600"
        )
    if cfg.vlan_segmentation not in ("vlan", "vxlan"):
        raise ConfigError(f"option vlan_segmentation: {cfg.vlan_segmentation!r} is not vlan or vxlan")
    for server in cfg.dns_server:
        try:
            ipaddress.IPv4Address(server)
        except ValueError:
            raise ConfigError(f"option dns_server: {server!r} is not an IPv4 address") from None
    return cfg


# Options of the original that the host side does not implement. Each is refused when
# an agent starts with it set to anything but its default, so none is silently ignored
# (docs/configuration.md says why for each).
UNSUPPORTED: dict[str, str] = {
    "use_single_default_gateway": "every VIF's DHCP offers its network's gateway as router",
    "forward_bridge_interface": "forwarding in and out of novanet bridges is not limited per interface",
    "dhcpbridge": "the lease script is novanet's own (python -m novanet.agent.dhcpbridge)",
}


def check_supported(cfg: Config) -> None:
    """ConfigError naming the first option set to a value the host side cannot honour."""
    for name, why in UNSUPPORTED.items():
        value, default = getattr(cfg, name), _DEFAULTS[name]
        if value != default:
            raise ConfigError(
                f"option {name} = {value!r} is not supported by novanet's agent ({why}); remove it"
            )


_base = Config()
for _f in fields(Config):
    _DEFAULTS[_f.name] = getattr(_base, _f.name)
del _base
