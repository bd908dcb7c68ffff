"""Which bridge ports are whose: the facts of the kernel the bridge filter needs.

The bridge table drops every frame from a port it does not know. Ports of bridges that
are not novanet's are listed explicitly (``HostState.foreign_ports``), because the
kernels we run on cannot tell nftables which bridge a port belongs to; ports of our
bridges that are neither an instance port nor the segment are reported as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable

from novanet.host.model import HostState
from novanet.host.netlink.base import Link


def foreign_ports(links: Iterable[Link], ours: Iterable[str]) -> tuple[str, ...]:
    """Ports enslaved to a bridge that is not one of ``ours``."""
    links = list(links)
    ours = set(ours)
    bridges = {link.name for link in links if link.kind == "bridge"} - ours
    return tuple(sorted(link.name for link in links if link.master in bridges))


def unknown_ports(links: Iterable[Link], state: HostState) -> list[str]:
    """One line per port of one of our bridges that the filter drops: no VIF on this
    host (a tap under another name, an instance deallocated while plugged), no VPN
    appliance and not the bridge's segment."""
    known = {v.port for v in state.vifs} | {a.port for a in state.appliances}
    known |= {b.segment.name for b in state.bridges if b.segment is not None}
    ours = set(state.bridge_names)
    return [
        f"port {link.name} of bridge {link.master} is no known VIF or segment: its frames are dropped"
        for link in sorted(links, key=lambda x: x.name)
        if link.master in ours and link.name not in known
    ]
