"""The three network managers as small strategy objects.

A mode answers the questions where Flat, FlatDHCP and VLAN differ; nothing else in the
code branches on the manager's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from novanet.domain.errors import ConfigError


@dataclass(frozen=True)
class Mode:
    name: str  # short name: flat, flatdhcp, vlan
    class_path: str  # the original's nova.network.manager class
    dhcp: bool  # runs a DHCP server per network
    vlan: bool  # VLAN/VPN addressing, one network per project
    injected_default: bool  # whether addresses are written into the guest image

    @property
    def per_project_networks(self) -> bool:
        """VLAN mode hands each project a network of its own on first boot."""
        return self.vlan

    @property
    def frees_address_at_once(self) -> bool:
        """Without a DHCP server there is no lease to wait for on deallocation."""
        return not self.dhcp


FLAT = Mode("flat", "nova.network.manager.FlatManager", dhcp=False, vlan=False, injected_default=True)
FLATDHCP = Mode(
    "flatdhcp", "nova.network.manager.FlatDHCPManager", dhcp=True, vlan=False, injected_default=False
)
VLAN = Mode("vlan", "nova.network.manager.VlanManager", dhcp=True, vlan=True, injected_default=False)

MODES = {m.name: m for m in (FLAT, FLATDHCP, VLAN)}
_ALIASES = {
    "flat": FLAT,
    "flatmanager": FLAT,
    "flatdhcp": FLATDHCP,
    "flatdhcpmanager": FLATDHCP,
    "vlan": VLAN,
    "vlanmanager": VLAN,
}


def mode_from_name(value: str) -> Mode:
    """Accept short names (flat, flatdhcp, vlan) and the original class paths."""
    key = value.strip().rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "")
    mode = _ALIASES.get(key)
    if mode is None:
        raise ConfigError(
            f"unknown network manager {value!r}: use flat, flatdhcp or vlan"
            " (or nova.network.manager.FlatManager / FlatDHCPManager / VlanManager)"
        )
    return mode
