"""Render an instance's network configuration from its network info (domain/netinfo.py).

Two renderings:
- the Debian-style ``/etc/network/interfaces`` the original injected in Flat mode (its
  interfaces template's layout: ``auto lo``, then per injected network ``auto ethN`` /
  ``iface ethN inet static`` with address, netmask, broadcast, gateway,
  dns-nameservers). Only networks with ``injected`` set appear; ``ethN`` follows the VIF
  order (the guest's NIC order), so a non-injected VIF keeps its number. With
  ``use_single_default_gateway`` only the first injected NIC carries the gateway.
- the OpenStack config drive's ``network_data.json`` (links, networks, services) and
  ``meta_data.json`` (uuid, hostname, name).

Pure functions of their input: values come from the database, so each is checked before
it is written into a file a guest will parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from novanet.domain.errors import InvalidInput

HEADER = """\
# Injected by novanet on instance boot
#
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

# The loopback network interface
auto lo
iface lo inet loopback
"""

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


@dataclass(frozen=True)
class Nic:
    """One injected NIC, as the interfaces file writes it."""

    name: str
    address: str
    netmask: str
    broadcast: str
    gateway: str | None
    dns: tuple[str, ...]


def _ip(value: Any, what: str) -> str:
    try:
        return str(IPv4Address(str(value)))
    except ValueError:
        raise InvalidInput(f"bad {what} {value!r} in the network info") from None


def _first_ip(subnet: Mapping[str, Any]) -> str | None:
    for ip in subnet.get("ips") or []:
        if ip.get("type", "fixed") == "fixed":
            return _ip(ip["address"], "fixed IP")
    return None


def injected_nics(network_info: Sequence[Mapping[str, Any]], *, single_gateway: bool) -> list[Nic]:
    """The NICs of injected networks that hold a fixed IP, named after their VIF index."""
    nics: list[Nic] = []
    for index, vif in enumerate(network_info):
        net = vif["network"]
        if not net.get("injected"):
            continue
        for subnet in net.get("subnets") or []:
            if subnet.get("version", 4) != 4:
                continue
            address = _first_ip(subnet)
            if address is None:
                continue
            gateway = _ip(subnet["gateway"], "gateway") if subnet.get("gateway") else None
            if single_gateway and nics:
                gateway = None
            nics.append(
                Nic(
                    name=f"eth{index}",
                    address=address,
                    netmask=_ip(subnet["netmask"], "netmask"),
                    broadcast=_ip(subnet["broadcast"], "broadcast"),
                    gateway=gateway,
                    dns=tuple(_ip(d, "DNS server") for d in subnet.get("dns") or []),
                )
            )
            break  # one IPv4 subnet per VIF, as the original's template
    return nics


def interfaces(network_info: Sequence[Mapping[str, Any]], *, single_gateway: bool = False) -> str | None:
    """The /etc/network/interfaces text, or None when no network of the instance is injected
    (the original then injected nothing)."""
    nics = injected_nics(network_info, single_gateway=single_gateway)
    if not nics:
        return None
    parts = [HEADER]
    for n in nics:
        lines = [
            f"auto {n.name}",
            f"iface {n.name} inet static",
            f"    address {n.address}",
            f"    netmask {n.netmask}",
            f"    broadcast {n.broadcast}",
        ]
        if n.gateway:
            lines.append(f"    gateway {n.gateway}")
        if n.dns:
            lines.append(f"    dns-nameservers {' '.join(n.dns)}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _mac(value: Any) -> str:
    mac = str(value).lower()
    if not _MAC.match(mac):
        raise InvalidInput(f"bad MAC address {value!r} in the network info")
    return mac


def network_data(
    network_info: Sequence[Mapping[str, Any]], *, single_gateway: bool = False
) -> dict[str, Any]:
    """The config drive's openstack/latest/network_data.json.

    Every VIF is a link (its MAC, so the guest matches NICs by address, not by order).
    An injected network, or one without DHCP, is a static ``ipv4`` network with its
    address, netmask, default route and DNS; a network served by DHCP is ``ipv4_dhcp``.
    """
    links: list[dict[str, Any]] = []
    nets: list[dict[str, Any]] = []
    dns_all: list[str] = []
    have_default = False
    for index, vif in enumerate(network_info):
        net = vif["network"]
        link_id = str(vif.get("devname") or f"tap{index}")
        links.append(
            {
                "id": link_id,
                "vif_id": str(vif["id"]),
                "type": "bridge" if vif.get("type", "bridge") == "bridge" else "vif",
                "ethernet_mac_address": _mac(vif["address"]),
            }
        )
        for subnet in net.get("subnets") or []:
            if subnet.get("version", 4) != 4:
                continue
            address = _first_ip(subnet)
            dns = [_ip(d, "DNS server") for d in subnet.get("dns") or []]
            for d in dns:
                if d not in dns_all:
                    dns_all.append(d)
            entry: dict[str, Any] = {
                "id": f"network{len(nets)}",
                "link": link_id,
                "network_id": str(net["id"]),
            }
            static = bool(net.get("injected")) or not net.get("dhcp", True)
            if static and address is not None:
                cidr = IPv4Network(f"{address}/{_ip(subnet['netmask'], 'netmask')}", strict=False)
                routes = []
                if subnet.get("gateway") and not (single_gateway and have_default):
                    routes.append(
                        {
                            "network": "0.0.0.0",
                            "netmask": "0.0.0.0",
                            "gateway": _ip(subnet["gateway"], "gateway"),
                        }
                    )
                    have_default = True
                entry.update(
                    type="ipv4",
                    ip_address=address,
                    netmask=str(cidr.netmask),
                    routes=routes,
                    services=[{"type": "dns", "address": d} for d in dns],
                )
            else:
                entry["type"] = "ipv4_dhcp"
            nets.append(entry)
            break
    return {
        "links": links,
        "networks": nets,
        "services": [{"type": "dns", "address": d} for d in dns_all],
    }


def meta_data(uuid: str, hostname: str | None) -> dict[str, Any]:
    """The config drive's openstack/latest/meta_data.json (what a network-only guest needs)."""
    name = hostname or f"server-{uuid}"
    if not _HOSTNAME.match(name):
        raise InvalidInput(f"bad hostname {name!r} for the config drive")
    return {
        "uuid": uuid,
        "hostname": name,
        "name": name,
        "launch_index": 0,
        "availability_zone": "nova",
        "meta": {},
        "public_keys": {},
    }
