"""The reconcile loop of one host: level-triggered, like kube-proxy and OVN's controller.

- A full sync at start and after any failure: read a snapshot, compute the desired state,
  replace our nftables tables in one transaction, converge links and dnsmasq.
- Partial syncs between: read the change log, re-read only what changed when that is a
  few floating IPs (the hot path), otherwise a fresh snapshot; apply the difference to
  what was applied last (nftables element deltas, only the bridges and DHCP servers that
  changed). The kernel ruleset is never listed on this path.
- A cheap liveness probe every few seconds (our tables exist, bridges exist, each dnsmasq
  runs) and a full drift check every ``agent_resync_interval``; any drift starts a full
  sync, which repairs what someone else removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from novanet.agent import snapshot as snapmod
from novanet.agent.metrics import Metrics
from novanet.host import netlink, nft
from novanet.host.desired import Snapshot, desired_state
from novanet.host.dnsmasq import DnsmasqManager
from novanet.host.model import HostState
from novanet.host.netlink_base import LinkBackend
from novanet.service import fixed as fixedsvc
from novanet.service.context import Ctx, run

log = logging.getLogger("novanet.agent")

PROBE_INTERVAL = 2.0


@dataclass
class Realizers:
    links: LinkBackend
    nft: nft.NftBackend
    dhcp: DnsmasqManager
    forwarding: Callable[[], object] = netlink.enable_forwarding
    arp: Callable[[str, str, int], None] | None = None  # gratuitous ARP sender


@dataclass
class Agent:
    ctx: Ctx
    host: str
    realizers: Realizers
    metrics: Metrics = field(default_factory=Metrics)
    applied: HostState | None = None
    snap: Snapshot | None = None
    last_change: int = 0
    needs_full: bool = True
    _last_probe: float = 0.0
    _last_resync: float = 0.0

    # --- reading -------------------------------------------------------------------

    def _read_full(self) -> tuple[Snapshot, int]:
        def tx(conn: Connection) -> tuple[Snapshot, int]:
            return snapmod.read_snapshot(conn, self.host), snapmod.latest_change(conn)

        return run(self.ctx, tx, write=False)

    def desired(self) -> HostState:
        snap, _ = self._read_full()
        return desired_state(snap, self.host, self.ctx.config)

    # --- syncing -------------------------------------------------------------------

    def full_sync(self) -> HostState:
        """Make the host match the database from scratch (idempotent)."""
        started = time.perf_counter()
        try:
            snap, last = self._read_full()
            state = desired_state(snap, self.host, self.ctx.config)
            self._realize(None, state, snap)
        except Exception:
            self.metrics.sync_failures.labels("full").inc()
            self.needs_full = True
            raise
        self.snap, self.applied, self.last_change, self.needs_full = snap, state, last, False
        self._last_resync = time.monotonic()
        self.metrics.sync_seconds.labels("full").observe(time.perf_counter() - started)
        self._count(state)
        log.info("full sync of %s: %s", self.host, _summary(state))
        return state

    def partial_sync(self) -> bool:
        """Apply the changes logged since the last sync; False when there were none."""
        if self.needs_full or self.applied is None or self.snap is None:
            self.full_sync()
            return True
        started = time.perf_counter()
        snap, applied = self.snap, self.applied

        def tx(conn: Connection) -> tuple[list[tuple[int, str, str]], Snapshot]:
            events = snapmod.changes_after(conn, self.last_change)
            if not events:
                return events, snap
            kinds = {k for _, k, _ in events}
            if kinds == {"floating"}:
                snapmod.refresh_floating(conn, snap, self.host, (ref for _, _, ref in events))
                return events, snap
            return events, snapmod.read_snapshot(conn, self.host)

        try:
            events, new_snap = run(self.ctx, tx, write=False)
            if not events:
                self.metrics.pending_changes.set(0)
                return False
            state = desired_state(new_snap, self.host, self.ctx.config)
            self._realize(applied, state, new_snap)
        except Exception:
            self.metrics.sync_failures.labels("partial").inc()
            self.needs_full = True
            raise
        self.snap, self.applied, self.last_change = new_snap, state, events[-1][0]
        self.metrics.sync_seconds.labels("partial").observe(time.perf_counter() - started)
        self.metrics.pending_changes.set(0)
        self._count(state)
        return True

    def _realize(self, old: HostState | None, new: HostState, snap: Snapshot) -> None:
        r = self.realizers
        if any(b.addresses for b in new.bridges):
            r.forwarding()
        if old is None or old.bridges != new.bridges:
            netlink.ensure_bridges(r.links, new.bridges)
        if old is None:
            r.nft.apply(nft.full_sync(new))
        else:
            cmds = nft.delta(old, new)
            if cmds:
                r.nft.apply(cmds)
        self._bind_floating(old, new, snap)
        if old is None or old.dhcp != new.dhcp:
            report = r.dhcp.sync(new.dhcp, prune=old is None)
            if not report.ok:
                raise RuntimeError(f"dhcp: {report.errors}")
        self._release(new)

    def _bind_floating(self, old: HostState | None, new: HostState, snap: Snapshot) -> None:
        """Floating IPs bound /32 on their interfaces. A full sync also removes the /32s of
        floating IPs this host no longer NATs (left behind by a crash or a move)."""

        def by_iface(state: HostState | None) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            if state is not None and state.nat is not None:
                for f in state.nat.floating:
                    out.setdefault(f.interface, set()).add(f.address)
            return out

        links = self.realizers.links
        want, had = by_iface(new), by_iface(old)
        ifaces = set(want) | set(had)
        if old is None:
            ifaces |= snap.floating_interfaces
        for iface in sorted(ifaces):
            if links.link(iface) is None:
                if iface in want:
                    log.warning("floating IP interface %s does not exist on %s", iface, self.host)
                continue
            if old is None:
                bound = {a.cidr.split("/")[0] for a in links.addresses(iface) if a.cidr.endswith("/32")}
                had[iface] = bound & snap.floating_addresses
            add = want.get(iface, set()) - had.get(iface, set())
            gone = had.get(iface, set()) - want.get(iface, set())
            if add:
                netlink.bind_addresses(links, iface, add)
                if self.ctx.config.send_arp_for_ha and self.realizers.arp is not None:
                    for address in sorted(add):
                        self.realizers.arp(iface, address, self.ctx.config.send_arp_for_ha_count)
            if gone:
                netlink.unbind_addresses(links, iface, gone)

    def _release(self, state: HostState) -> None:
        """force_dhcp_release: drop each queued lease, then free the address in the DB
        (dnsmasq's `del` event does the same; whichever comes first wins)."""
        for bridge, address, mac in state.releases:
            try:
                self.realizers.dhcp.release(bridge, address, mac)
            except Exception as exc:
                log.warning("dhcp_release %s %s on %s: %s", address, mac, bridge, exc)
            fixedsvc.release(self.ctx, address, mac)

    def _count(self, state: HostState) -> None:
        m = self.metrics.elements
        m.labels("bridges").set(len(state.bridges))
        m.labels("dhcp_servers").set(len(state.dhcp))
        m.labels("dhcp_hosts").set(sum(len(d.hosts) for d in state.dhcp))
        m.labels("floating_ips").set(len(state.nat.floating) if state.nat else 0)
        m.labels("vif_filters").set(len(state.vifs))

    # --- drift -----------------------------------------------------------------------

    def check(self, state: HostState | None = None) -> list[str]:
        """Every difference between the host and the database, one line each."""
        expected = state if state is not None else self.desired()
        r = self.realizers
        out = [f"links: {d}" for d in netlink.drift(expected.bridges, r.links)]
        out += [f"nftables: {d}" for d in nft.drift(expected, r.nft)]
        out += [f"dhcp: {d}" for d in r.dhcp.check(expected.dhcp)]
        return out

    def probe(self) -> list[str]:
        """Cheap liveness check of what a full sync would repair."""
        if self.applied is None:
            return []
        problems = []
        for b in self.applied.bridges:
            if self.realizers.links.link(b.name) is None:
                problems.append(f"bridge {b.name} is missing")
        problems += [p for p in self.realizers.dhcp.check(self.applied.dhcp) if "not running" in p]
        if (self.applied.nat is not None or self.applied.vifs) and not self.realizers.nft.tables_present():
            problems.append("novanet nftables tables are missing")
        return problems

    # --- the loop ----------------------------------------------------------------------

    def step(self) -> None:
        """One turn of the loop: sync what is needed, probe, and repair drift."""
        now = time.monotonic()
        if self.needs_full:
            self.full_sync()
            return
        self.partial_sync()
        if now - self._last_probe >= PROBE_INTERVAL:
            self._last_probe = now
            problems = self.probe()
            if not problems and now - self._last_resync >= self.ctx.config.agent_resync_interval:
                problems = self.check(self.applied)
                self._last_resync = now
            if problems:
                log.warning("drift on %s, repairing: %s", self.host, "; ".join(problems))
                self.metrics.drift_repairs.inc()
                self.full_sync()


def _summary(state: HostState) -> str:
    nat = state.nat
    return (
        f"{len(state.bridges)} bridges, {len(state.dhcp)} dhcp servers,"
        f" {len(nat.floating) if nat else 0} floating IPs, {len(state.vifs)} VIF filters"
    )
