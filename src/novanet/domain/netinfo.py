"""The network info of an instance, as the compute side consumes it.

Shaped after nova's network model: VIFs -> network -> subnets -> fixed IPs -> floating IPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from novanet.domain.models import Network


@dataclass(frozen=True)
class FixedAddress:
    address: str
    floating: tuple[str, ...] = ()


@dataclass(frozen=True)
class VifView:
    """Everything known about one VIF of an instance."""

    uuid: str
    mac: str
    network: Network
    gateway: str | None
    dhcp_server: str | None
    fixed: tuple[FixedAddress, ...] = field(default_factory=tuple)


def dns_servers(net: Network) -> list[str]:
    return [d for d in (net.dns1, net.dns2) if d]


def vif_info(v: VifView) -> dict[str, Any]:
    net = v.network
    cidr = IPv4Network(net.cidr)
    subnet = {
        "cidr": net.cidr,
        "netmask": net.netmask,
        "broadcast": net.broadcast,
        "version": 4,
        "gateway": v.gateway,
        "dns": dns_servers(net),
        "dhcp_server": v.dhcp_server,
        "routes": [],
        "ips": [
            {
                "address": f.address,
                "type": "fixed",
                "version": 4,
                "prefixlen": cidr.prefixlen,
                "floating_ips": [{"address": a, "type": "floating"} for a in f.floating],
            }
            for f in v.fixed
        ],
    }
    return {
        "id": v.uuid,
        "address": v.mac,
        "type": "bridge",
        "devname": ("tap" + v.uuid)[:14],
        "network": {
            "id": net.uuid,
            "label": net.label,
            "bridge": net.bridge,
            "bridge_interface": net.bridge_interface,
            "vlan": net.vlan,
            "multi_host": net.multi_host,
            "injected": net.injected,
            "tenant_id": net.project_id,
            "should_create_bridge": True,
            "should_create_vlan": net.vlan is not None,
            "dhcp": net.manager != "flat",
            "subnets": [subnet],
        },
    }


def network_info(vifs: list[VifView]) -> list[dict[str, Any]]:
    return [vif_info(v) for v in vifs]
