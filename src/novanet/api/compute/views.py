"""Network bodies of the Compute API: the fields every caller sees, and the admin's."""

from __future__ import annotations

from typing import Any

from novanet.domain.models import Network
from novanet.service.context import Ctx


def network(n: Network) -> dict[str, Any]:
    """os-networks for a non-admin (nova's _network_dict without admin fields)."""
    return {
        "id": n.uuid,
        "label": n.label,
        "cidr": n.cidr,
        "cidr_v6": n.cidr_v6,
        "netmask": n.netmask,
        "netmask_v6": None,
        "gateway": n.gateway,
        "gateway_v6": None,
        "broadcast": n.broadcast,
        "dns1": n.dns1,
        "dns2": n.dns2,
    }


def network_admin(ctx: Ctx, n: Network) -> dict[str, Any]:
    """os-networks for an admin: every column the original showed."""
    return {
        **network(n),
        "bridge": n.bridge,
        "bridge_interface": n.bridge_interface,
        "created_at": None,
        "updated_at": None,
        "deleted": False,
        "deleted_at": None,
        "dhcp_start": n.dhcp_start,
        "dhcp_server": n.gateway if n.manager != "flat" else None,
        "enable_dhcp": n.manager != "flat",
        "host": n.host,
        "injected": n.injected,
        "mtu": ctx.config.network_device_mtu,
        "multi_host": n.multi_host,
        "priority": n.priority,
        "project_id": n.project_id,
        "rxtx_base": n.rxtx_base,
        "share_address": ctx.config.share_dhcp_address,
        "vlan": n.vlan,
        "vpn_private_address": n.vpn_private_address,
        "vpn_public_address": n.vpn_public_address,
        "vpn_public_port": n.vpn_public_port,
    }


def tenant_network(n: Network) -> dict[str, Any]:
    """os-tenant-networks: id, cidr, label."""
    return {"id": n.uuid, "cidr": n.cidr, "label": n.label}
