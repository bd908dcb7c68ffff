"""Plain records read from the database, named with the original's column names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Network:
    id: int
    uuid: str
    label: str
    injected: bool
    cidr: str
    cidr_v6: str | None
    multi_host: bool
    netmask: str
    gateway: str | None
    broadcast: str
    dns1: str | None
    dns2: str | None
    dhcp_start: str | None
    bridge: str | None
    bridge_interface: str | None
    vlan: int | None
    vpn_public_address: str | None
    vpn_public_port: int | None
    vpn_private_address: str | None
    project_id: str | None
    host: str | None
    priority: int | None
    rxtx_base: int | None
    manager: str

    @classmethod
    def from_row(cls, row: Any) -> Network:
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__})

    def public(self) -> dict[str, Any]:
        """The original's column names, as `network list --json` prints them."""
        return {
            "id": self.id,
            "uuid": self.uuid,
            "label": self.label,
            "cidr": self.cidr,
            "netmask": self.netmask,
            "gateway": self.gateway,
            "broadcast": self.broadcast,
            "dhcp_start": self.dhcp_start,
            "bridge": self.bridge,
            "bridge_interface": self.bridge_interface,
            "vlan": self.vlan,
            "vpn_private_address": self.vpn_private_address,
            "vpn_public_address": self.vpn_public_address,
            "vpn_public_port": self.vpn_public_port,
            "multi_host": self.multi_host,
            "dns1": self.dns1,
            "dns2": self.dns2,
            "project_id": self.project_id,
            "host": self.host,
            "injected": self.injected,
            "priority": self.priority,
            "manager": self.manager,
        }
