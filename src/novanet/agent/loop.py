"""The reconcile loop of one host: level-triggered, like kube-proxy and OVN's controller.

- A full sync at start and after any failure: read a snapshot, compute the desired state,
  replace our nftables tables in one transaction, converge links and dnsmasq.
- Partial syncs between: read the change log, re-read only what changed when that is a
  few floating IPs (the hot path), otherwise a fresh snapshot; apply the difference to
  what was applied last (nftables element deltas, only the bridges and DHCP servers that
  changed). The kernel ruleset is never listed on this path.
- A cheap liveness probe every few seconds (our tables exist, bridges exist, each dnsmasq
  runs) and a full drift check every ``agent_resync_interval`` (the host against what was
  applied, and what was applied against a fresh read of the database); any drift starts a
  full sync, which repairs what someone else removed.
- The change log is read by id, but ids need not become visible in order (PostgreSQL
  takes them from a sequence before commit): see ``ChangeCursor``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Connection

from novanet.agent import ports
from novanet.agent import snapshot as snapmod
from novanet.agent.metrics import Metrics
from novanet.domain.errors import NovanetError
from novanet.host import screen
from novanet.host.desired import SnapFloating, Snapshot, desired_state
from novanet.host.dnsmasq.realizer import DnsmasqManager
from novanet.host.model import FloatingNat, HostState
from novanet.host.netlink import realizer as netlink
from novanet.host.netlink.base import LinkBackend
from novanet.host.nft import realizer as nft
from novanet.host.owned import OwnedBridges, as_built, merged
from novanet.service import fixed as fixedsvc
from novanet.service.context import CHANNEL, Ctx, host_channel, network_channel, run
from novanet.vpn.appliance import Appliances

log = logging.getLogger("novanet.agent")

PROBE_INTERVAL = 2.0
UNKNOWN = "ports: "  # check lines about unknown bridge ports (reported, not repaired)
GAP_GRACE = 10.0  # seconds a hole in the change-log ids may stay open before it is given up
GAP_WINDOW = 1000  # ids below the newest that a full sync still watches for late commits
MAX_TRACKED = 100_000  # a bigger jump of ids is not tracked id by id (the resync backs it up)


@dataclass
class ChangeCursor:
    """Which entries of the change log have been applied.

    Change ids come from a sequence when the row is inserted, but become visible when
    their transaction commits: on PostgreSQL id 11 can be read while id 10 is still in
    flight. Remembering only the highest id read would skip 10 for good. So ``low`` is a
    watermark (every id up to it was applied or given up on), ``seen`` the applied ids
    above it, and ``holes`` the missing ids in between with the time each was first
    missed. A hole fills when its writer commits; one still empty after GAP_GRACE is
    given up (a rolled-back transaction leaves a hole forever). SQLite commits in id
    order and never leaves holes, so there ``low`` is simply the newest id.
    """

    low: int = 0
    seen: set[int] = field(default_factory=set)
    holes: dict[int, float] = field(default_factory=dict)

    def reset(self, newest: int, recent: Iterable[int], now: float) -> None:
        """After a full sync that read the log up to ``newest``; ``recent`` are the ids
        visible in the GAP_WINDOW below it (the missing ones may still commit)."""
        self.low = max(newest - GAP_WINDOW, 0)
        self.seen, self.holes = set(), {}
        self.mark(recent, now, newest)

    def unseen(self, events: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        return [e for e in events if e[0] not in self.seen]

    def mark(self, ids: Iterable[int], now: float, newest: int = 0) -> None:
        """Record ``ids`` as applied and move the watermark as far as it may go; ids up to
        ``newest`` that are not among them are holes."""
        for i in ids:
            if i > self.low:
                self.seen.add(i)
                self.holes.pop(i, None)
        top = max(newest, max(self.seen, default=0))
        if top - self.low > MAX_TRACKED:
            log.warning("change log jumped from id %d to %d: not tracking holes", self.low, top)
            self.low, self.seen, self.holes = top, set(), {}
            return
        for i in range(self.low + 1, top + 1):
            if i not in self.seen:
                self.holes.setdefault(i, now)
        while True:
            nxt = self.low + 1
            if nxt in self.seen:
                self.seen.discard(nxt)
            elif nxt in self.holes and now - self.holes[nxt] >= GAP_GRACE:
                del self.holes[nxt]
                log.info("change %d never became visible: skipping it", nxt)
            else:
                break
            self.low = nxt


@dataclass
class Realizers:
    links: LinkBackend
    nft: nft.NftBackend
    dhcp: DnsmasqManager
    forwarding: Callable[[], object] = netlink.enable_forwarding
    arp: Callable[[str, str, int], None] | None = None  # gratuitous ARP sender
    owned: OwnedBridges = field(default_factory=lambda: OwnedBridges(None))  # what we built
    vpn: Appliances | None = None  # cloudpipe VPN appliances (None: this agent runs none)


@dataclass
class Agent:
    ctx: Ctx
    host: str
    realizers: Realizers
    metrics: Metrics = field(default_factory=Metrics)
    applied: HostState | None = None
    snap: Snapshot | None = None
    cursor: ChangeCursor = field(default_factory=ChangeCursor)
    needs_full: bool = True
    clock: Callable[[], float] = time.monotonic
    _last_probe: float = float("-inf")
    _last_resync: float = 0.0
    _released: set[tuple[str, str, str]] = field(default_factory=set)
    _rejected: tuple[str, ...] = ()
    _vpn_failed: dict[str, str] = field(default_factory=dict)  # appliance port -> why it failed

    @property
    def last_change(self) -> int:
        """Every change up to this id has been applied (or given up on)."""
        return self.cursor.low

    def channels(self) -> set[str]:
        """The PostgreSQL NOTIFY channels of this host's scope."""
        nets = self.snap.networks if self.snap is not None else ()
        return {CHANNEL, host_channel(self.host), *(network_channel(n) for n in nets)}

    # --- reading -------------------------------------------------------------------

    def _read_full(self) -> tuple[Snapshot, int, list[int]]:
        def tx(conn: Connection) -> tuple[Snapshot, int, list[int]]:
            # The log position first: a change committed while the snapshot is read (on
            # PostgreSQL every statement sees the latest commits) is then applied again by
            # the next partial sync instead of being counted as applied and missed.
            newest = snapmod.latest_change(conn)
            recent = snapmod.change_ids_after(conn, newest - GAP_WINDOW)
            self.metrics.snapshot_reads.inc()
            return snapmod.read_snapshot(conn, self.host, self.ctx.config.effective_vpn_ip), newest, recent

        return run(self.ctx, tx, write=False)

    def desired(self) -> HostState:
        snap, _, _ = self._read_full()
        return desired_state(snap, self.host, self.ctx.config)

    # --- syncing -------------------------------------------------------------------

    def full_sync(self) -> HostState:
        """Make the host match the database from scratch (idempotent)."""
        started = time.perf_counter()
        self.needs_full = True
        try:
            snap, newest, recent = self._read_full()
            state = self._with_foreign(desired_state(snap, self.host, self.ctx.config))
            self._released.clear()
            state = self._realize(None, state, snap)
        except Exception:
            self.metrics.sync_failures.labels("full").inc()
            raise
        self.snap, self.applied, self.needs_full = snap, state, False
        self.cursor.reset(newest, recent, self.clock())
        self._last_resync = self.clock()
        self.metrics.sync_seconds.labels("full").observe(time.perf_counter() - started)
        self.metrics.pending_changes.set(0)
        self._count(state)
        log.info("full sync of %s: %s", self.host, _summary(state))
        return state

    def partial_sync(self) -> bool:
        """Apply the changes logged since the last sync; False when there were none."""
        if self.needs_full or self.applied is None or self.snap is None:
            self.full_sync()
            return True
        started = time.perf_counter()
        snap, applied, cursor = self.snap, self.applied, self.cursor

        before: dict[str, SnapFloating] = {}
        others: list[int] = []
        host = self.host

        def tx(conn: Connection) -> tuple[list[tuple[int, str, str]], Snapshot]:
            # only the changes of this host's scope; of the others, only their ids
            mine, other = snapmod.scoped_changes_after(conn, cursor.low, host, snap.networks)
            others[:] = [i for i in other if i not in cursor.seen]
            events = cursor.unseen(mine)
            if not events:
                return events, snap
            kinds = {k for _, k, _ in events}
            refs = {ref for _, k, ref in events if k == "floating"}
            if kinds == {"floating"}:
                before.clear()
                before.update({a: snap.floating[a] for a in refs if a in snap.floating})
                snapmod.refresh_floating(conn, snap, host, refs)
                return events, snap
            if kinds <= {"floating", "instance"}:
                # a few instances: re-read just them (and their networks' peers), on a copy
                part = _copy(snap)
                insts = {ref for _, k, ref in events if k == "instance"}
                named = snapmod.networks_of_changes(conn, (i for i, k, _ in events if k == "instance"))
                if snapmod.refresh_instances(conn, part, host, insts, named):
                    snapmod.refresh_floating(conn, part, host, refs)
                    self.metrics.partial_reads.inc()
                    return events, part
            self.metrics.snapshot_reads.inc()
            return events, snapmod.read_snapshot(conn, host, self.ctx.config.effective_vpn_ip)

        try:
            events, new_snap = run(self.ctx, tx, write=False)
            if not events:
                cursor.mark(others, self.clock())  # changes of other hosts; holes may time out
                self.metrics.pending_changes.set(0)
                return False
            self.metrics.pending_changes.set(len(events))
            refs = {ref for _, kind, ref in events if kind == "floating"}
            fast = self._floating_fast_path(applied, new_snap, before, refs) if new_snap is snap else None
            if fast is not None:
                state = fast
            else:
                state = desired_state(new_snap, self.host, self.ctx.config)
                if state.bridge_names == applied.bridge_names:  # no listing on the hot path
                    state = replace(state, foreign_ports=applied.foreign_ports)
                else:  # a bridge that stops being ours (a NIC's) has foreign ports now
                    state = self._with_foreign(state)
                state = self._realize(applied, state, new_snap)
        except Exception:
            self.metrics.sync_failures.labels("partial").inc()
            self.needs_full = True
            raise
        self.snap, self.applied = new_snap, state
        cursor.mark([*(i for i, _, _ in events), *others], self.clock())
        self.metrics.sync_seconds.labels("partial").observe(time.perf_counter() - started)
        self.metrics.pending_changes.set(0)
        self._count(state)
        return True

    def _floating_fast_path(
        self, applied: HostState, snap: Snapshot, before: dict[str, SnapFloating], refs: set[str]
    ) -> HostState | None:
        """A batch of floating IP changes only: edit just their elements and /32s.

        Recomputing the whole host state and diffing every set costs time in proportion
        to the floating IPs and VIFs the host carries (0.4 s at 10,000); this costs time in
        proportion to the change. The states compared are restricted to the floating IPs
        sharing a fixed address with a changed one (the SNAT map keeps one per fixed IP).
        Returns the new applied state, or None when the general path is needed.
        """
        nat = applied.nat
        if nat is None or not snap.floating:
            return None
        # Rows skipped as malformed stay out; a change touching one (or making a new
        # one) takes the general path, which screens the snapshot and reports the row.
        skipped = {line.split()[1] for line in applied.rejected if line.startswith("floating ")}
        if refs & skipped or not all(
            screen.floating_ok(snap.floating[a]) for a in refs if a in snap.floating
        ):
            return None
        after = {a: snap.floating[a] for a in refs if a in snap.floating}
        fixed = {f.fixed_address for f in (*before.values(), *after.values())}
        rest = {
            a: f
            for a, f in snap.floating.items()
            if f.fixed_address in fixed and a not in refs and a not in skipped
        }

        def small(entries: dict[str, SnapFloating]) -> HostState:
            floating = tuple(
                FloatingNat(f.address, f.fixed_address, f.interface)
                for f in sorted(entries.values(), key=lambda f: f.address)
            )
            return HostState(host=applied.host, nat=replace(nat, floating=floating))

        old_small, new_small = small({**rest, **before}), small({**rest, **after})
        cmds = nft.delta(old_small, new_small)
        if cmds:
            self.realizers.nft.apply(cmds)
        self._bind_floating(old_small, new_small, snap)
        floating = tuple(
            FloatingNat(f.address, f.fixed_address, f.interface)
            for f in sorted(snap.floating.values(), key=lambda f: f.address)
            if f.address not in skipped
        )
        return replace(applied, nat=replace(nat, floating=floating))

    def _realize(self, old: HostState | None, new: HostState, snap: Snapshot) -> HostState:
        """Make the host carry ``new``; returns what was applied (``new``, with the
        ports of other bridges read again when a teardown changed them)."""
        r = self.realizers
        if any(b.addresses for b in new.bridges):
            r.forwarding()
        bridges_changed = old is None or old.bridges != new.bridges
        if bridges_changed:
            # recorded before it is built: a crash in between leaves nothing unrecorded
            r.owned.save(merged(r.owned.load(), as_built(new.bridges)))
            netlink.ensure_bridges(r.links, new.bridges)
            self._attach_ports(new)
        background: list[Future[None]] = []
        pool = ThreadPoolExecutor(2, thread_name_prefix="full-sync") if old is None else None
        try:
            if pool is not None:
                # A full sync's three big independent parts run side by side: the nft
                # transaction and `ip -batch` of the floating IPs' routes spend their time
                # in the kernel (libnftables and ip release the GIL), dnsmasq's files in the
                # filesystem.
                background.append(pool.submit(r.nft.apply, nft.full_sync(new)))
                background.append(pool.submit(self._bind_floating, old, new, snap))
            else:
                assert old is not None
                cmds = nft.delta(old, new)
                if cmds:
                    r.nft.apply(cmds)
                self._bind_floating(old, new, snap)
            self._realize_dhcp(old, new)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        for done in background:
            done.result()  # the first failure of a background part fails the sync
        if r.vpn is not None and (old is None or old.appliances != new.appliances or bridges_changed):
            # before the teardown: an appliance leaves with its network's bridge
            self._vpn_failed = r.vpn.sync(new.appliances)
        if bridges_changed:
            self._teardown(new)  # after dnsmasq of a network that left was stopped
            # a torn-down bridge frees its ports: they are nobody's foreign ports now
            fresh = self._with_foreign(new)
            if fresh.foreign_ports != new.foreign_ports:
                r.nft.apply(nft.delta(new, fresh))
                new = fresh
        self._release(new)
        return new

    def _realize_dhcp(self, old: HostState | None, new: HostState) -> None:
        r = self.realizers
        if old is None or old.dhcp != new.dhcp:
            # a network this host stopped serving loses its dnsmasq now, not at the next
            # full sync
            gone = old is not None and {d.network_uuid for d in old.dhcp} - {d.network_uuid for d in new.dhcp}
            report = r.dhcp.sync(new.dhcp, prune=old is None or bool(gone))
            if not report.ok:
                raise RuntimeError(f"dhcp: {report.errors}")

    def _with_foreign(self, state: HostState) -> HostState:
        """``state`` with the ports of other bridges of this namespace, exempt from the
        default drop of unknown bridge ports."""
        links = self.realizers.links.links()
        return replace(state, foreign_ports=ports.foreign_ports(links, state.bridge_names))

    def _teardown(self, state: HostState) -> None:
        """Tear down what networks that left this host left behind: their bridges (with
        the VLAN/VXLAN device; instance ports are only released) and, on a bridge that
        stays or carries a NIC, the gateway addresses no network needs any more."""
        r = self.realizers
        want = as_built(state.bridges)
        if any(line.startswith("network ") for line in state.rejected):
            # A network row that cannot be read may be what still uses one of these
            # bridges: nothing is deleted until it reads again (its instances keep L2).
            r.owned.save(merged(r.owned.load(), want))
            return
        keep = {}
        for name, built in r.owned.load().items():
            wanted = want.get(name)
            try:
                if wanted is None and not built.nic:
                    for change in netlink.remove_bridges(r.links, [name]):
                        log.info("teardown on %s: %s", self.host, change)
                    continue
                stale = built.addresses - (wanted.addresses if wanted else frozenset())
                if stale and r.links.link(name) is not None:
                    present = {a.cidr for a in r.links.addresses(name)}
                    for cidr in sorted(stale & present):
                        r.links.delete_address(name, cidr)
                        log.info("teardown on %s: removed %s from %s", self.host, cidr, name)
            except (netlink.LinkError, NovanetError) as exc:
                log.error("teardown of %s on %s: %s (retried at the next full sync)", name, self.host, exc)
                keep[name] = built
        r.owned.save({**keep, **want})

    def _leftovers(self, state: HostState) -> list[str]:
        """What `_teardown` would remove: the drift of networks that left this host."""
        links = self.realizers.links
        want = as_built(state.bridges)
        if any(line.startswith("network ") for line in state.rejected):
            return []  # kept on purpose while a network row cannot be read (see _teardown)
        out = []
        for name, built in sorted(self.realizers.owned.load().items()):
            wanted = want.get(name)
            if links.link(name) is None:
                continue
            if wanted is None and not built.nic:
                out.append(f"bridge {name} is left over: no network of this host uses it")
                continue
            if wanted is not None and not built.nic:
                continue  # foreign addresses of a wanted bridge are reported by netlink.drift
            stale = built.addresses - (wanted.addresses if wanted else frozenset())
            present = {a.cidr for a in links.addresses(name)}
            out += [
                f"bridge {name} still carries {c} of a network that left" for c in sorted(stale & present)
            ]
        return out

    def _attach_ports(self, state: HostState) -> None:
        """Put this host's instance ports back on their bridge: a bridge deleted and
        created again comes back without them (a port not plugged yet is left alone)."""
        links = self.realizers.links
        bridges = set(state.bridge_names)
        present = {link.name: link for link in links.links()}  # one dump, not one query per VIF
        for vif in state.vifs:
            if vif.bridge not in bridges:
                continue
            port = present.get(vif.port)
            if port is not None and port.master != vif.bridge:
                links.set_master(vif.port, vif.bridge)
                log.info("put %s back on %s", vif.port, vif.bridge)
            if port is not None:
                netlink.ipv6_off(links, vif.port)

    def _bind_floating(self, old: HostState | None, new: HostState, snap: Snapshot) -> None:
        """Floating IPs made local addresses of this host: one local route each in table
        local (``local A dev IFACE proto 78 scope host src A``), which makes the kernel
        answer ARP for A and accept its packets, as a /32 address would; but a route goes
        into the FIB in O(log n), an address walks the interface's address list (10,000
        /32s: 1.6 s in the kernel, 10,000 routes: 0.1 s). A full sync also removes the
        routes of floating IPs this host no longer NATs (left behind by a crash or a move;
        the protocol number marks them as ours) and the /32 addresses that versions before
        the routes bound instead."""

        def by_iface(state: HostState | None) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            if state is not None and state.nat is not None:
                for f in state.nat.floating:
                    out.setdefault(f.interface, set()).add(f.address)
            return out

        links = self.realizers.links
        want = by_iface(new)
        # Full sync: what the kernel has, one listing. Otherwise: what was applied, with
        # no listing of the (possibly 10,000) routes on the partial-sync path.
        had = links.local_routes() if old is None else by_iface(old)
        for iface in sorted(set(want) | set(had)):
            if not screen.interface_ok(iface) or links.link(iface) is None:
                if iface in want:
                    log.warning("floating IP interface %s does not exist on %s", iface, self.host)
                continue  # and a device that is gone took its routes along
            add = want.get(iface, set()) - had.get(iface, set())
            gone = had.get(iface, set()) - want.get(iface, set())
            if add or gone:
                links.set_local_routes(iface, sorted(add), sorted(gone))
            if add and self.ctx.config.send_arp_for_ha and self.realizers.arp is not None:
                self._announce(iface, sorted(add))
        if old is None:
            for iface, legacy in self._legacy_addresses(new, snap).items():
                # after the routes: `route replace` took over the kernel's local route of
                # such an address, and deleting the address leaves ours in place
                links.set_host_addresses(iface, [], [f"{a}/32" for a in sorted(legacy)])
                log.info("moved %d floating IPs on %s from /32 addresses to local routes", len(legacy), iface)

    def _legacy_addresses(self, state: HostState, snap: Snapshot | None) -> dict[str, set[str]]:
        """Floating IPs (of any host) bound as /32 addresses on the interfaces floating IPs
        use, as versions before the local routes did."""
        ifaces = {f.interface for f in state.nat.floating} if state.nat else set()
        if snap is not None:
            ifaces |= snap.floating_interfaces | {self.ctx.config.public_interface}
        out = {}
        for iface in sorted(ifaces):
            if not screen.interface_ok(iface) or self.realizers.links.link(iface) is None:
                continue
            bound = {a.cidr[:-3] for a in self.realizers.links.addresses(iface) if a.cidr.endswith("/32")}
            members = self._pool_members(bound)
            if members:
                out[iface] = members
        return out

    def _pool_members(self, addresses: set[str]) -> set[str]:
        """Which of ``addresses`` are floating IPs: asked of the database by address, so
        no snapshot carries the cloud's whole floating pool."""
        if not addresses:
            return set()
        return run(self.ctx, lambda conn: snapmod.pool_members(conn, addresses), write=False)

    def _announce(self, iface: str, addresses: list[str]) -> None:
        """Gratuitous ARP takes seconds per address: never inside the sync."""
        arp, count = self.realizers.arp, self.ctx.config.send_arp_for_ha_count
        assert arp is not None

        def send() -> None:
            for address in addresses:
                try:
                    arp(iface, address, count)
                except Exception as exc:  # an unanswered announcement is not a failed sync
                    log.warning("gratuitous ARP for %s on %s: %s", address, iface, exc)

        threading.Thread(target=send, name=f"garp-{iface}", daemon=True).start()

    def _release(self, state: HostState) -> None:
        """force_dhcp_release: drop each queued lease, then free the address in the DB
        (dnsmasq's `del` event does the same; whichever comes first wins). Freeing records
        no change, so a queued release stays in the snapshot until the next full read:
        each is done once."""
        self._released &= set(state.releases)
        for item in state.releases:
            if item in self._released:
                continue
            bridge, address, mac = item
            try:
                self.realizers.dhcp.release(bridge, address, mac)
            except Exception as exc:
                log.warning("dhcp_release %s %s on %s: %s", address, mac, bridge, exc)
            fixedsvc.release(self.ctx, address, mac)
            self._released.add(item)

    def _count(self, state: HostState) -> None:
        self._report_rejected(state.rejected)
        m = self.metrics.elements
        m.labels("bridges").set(len(state.bridges))
        m.labels("dhcp_servers").set(len(state.dhcp))
        m.labels("dhcp_hosts").set(sum(len(d.hosts) for d in state.dhcp))
        m.labels("floating_ips").set(len(state.nat.floating) if state.nat else 0)
        m.labels("vif_filters").set(len(state.vifs))

    def _report_rejected(self, rejected: tuple[str, ...]) -> None:
        """Rows left out for a malformed value: logged once each (not every sync), counted
        per kind, and listed by `agent check` (from the state)."""
        for line in sorted(set(rejected) - set(self._rejected)):
            log.error("database row skipped on %s: %s", self.host, line)
        self._rejected = rejected
        kinds = ("network", "vif", "floating", "host")
        for kind in kinds:
            self.metrics.rejected_rows.labels(kind).set(
                sum(1 for r in rejected if r.split(" ", 1)[0] == kind)
            )

    # --- drift -----------------------------------------------------------------------

    def check(self, state: HostState | None = None, snap: Snapshot | None = None) -> list[str]:
        """Every difference between the host and the database (or ``state``, read from
        ``snap``), one line each."""
        if state is None:
            snap, _, _ = self._read_full()
            state = self._with_foreign(desired_state(snap, self.host, self.ctx.config))
        r = self.realizers
        out = [f"database: row skipped, {line}" for line in state.rejected]
        out += [f"links: {d}" for d in netlink.drift(state.bridges, r.links)]
        out += [f"links: {d}" for d in self._port_drift(state)]
        out += [f"links: {d}" for d in self._leftovers(state)]
        out += [f"{UNKNOWN}{d}" for d in ports.unknown_ports(r.links.links(), state)]
        out += [f"floating: {d}" for d in self._floating_drift(state, snap)]
        out += [f"nftables: {d}" for d in nft.drift(state, r.nft)]
        out += [f"dhcp: {d}" for d in r.dhcp.check(state.dhcp)]
        if r.vpn is not None:
            out += [f"vpn: {d}" for d in r.vpn.check(state.appliances)]
        return out

    def _port_drift(self, state: HostState) -> list[str]:
        out = []
        present = {link.name: link for link in self.realizers.links.links()}
        for vif in state.vifs:
            port = present.get(vif.port)
            if vif.bridge and port is not None and port.master != vif.bridge:
                out.append(f"instance port {vif.port} is not on bridge {vif.bridge}")
            if port is not None and not self.realizers.links.ipv6_off(vif.port):
                out.append(f"instance port {vif.port} has IPv6 on")
        return out

    def _floating_drift(self, state: HostState, snap: Snapshot | None) -> list[str]:
        """Floating IPs not local (no route of ours) where they are NATed, routes of ours
        for floating IPs this host does not NAT, and floating IPs still bound as /32
        addresses."""
        want: dict[str, set[str]] = {}
        for f in state.nat.floating if state.nat else ():
            want.setdefault(f.interface, set()).add(f.address)
        present = self.realizers.links.local_routes()
        out = []
        for iface in sorted(set(want) | set(present)):
            if iface in want and (not screen.interface_ok(iface) or self.realizers.links.link(iface) is None):
                out.append(f"interface {iface} of {len(want[iface])} floating IPs does not exist")
                continue
            missing = want.get(iface, set()) - present.get(iface, set())
            stale = present.get(iface, set()) - want.get(iface, set())
            if missing:
                out.append(f"{len(missing)} not bound on {iface}: {_some(missing)}")
            if stale:
                out.append(f"{len(stale)} bound on {iface} but not NATed here: {_some(stale)}")
        for iface, legacy in self._legacy_addresses(state, snap).items():
            out.append(
                f"{len(legacy)} bound as /32 addresses on {iface} (instead of local routes): {_some(legacy)}"
            )
        return out

    def probe(self) -> list[str]:
        """Cheap liveness check of what a full sync would repair (no element listed: one
        link lookup per bridge, one scan of /proc for the dnsmasq processes, and the
        names of the nftables tables)."""
        if self.applied is None:
            return []
        r = self.realizers
        applied = self.applied
        problems = [f"bridge {b.name} is missing" for b in applied.bridges if r.links.link(b.name) is None]
        running = r.dhcp.running() if applied.dhcp else {}  # one /proc scan for all
        problems += [
            f"dnsmasq of network {d.network_uuid} is not running"
            for d in applied.dhcp
            if d.network_uuid not in running
        ]
        if r.vpn is not None:
            # a crashed or killed server is started again by the full sync; one that fails
            # to start (no certificate here) is reported by `agent check`, not retried hot
            problems += [
                f"VPN appliance of project {a.project} is not running"
                for a in applied.appliances
                if a.port not in self._vpn_failed and not r.vpn.running(a)
            ]
        if (applied.nat is not None or applied.vifs) and not r.nft.tables_present():
            problems.append("novanet nftables tables are missing")
        if applied.bridges:
            foreign = ports.foreign_ports(r.links.links(), applied.bridge_names)
            if foreign != applied.foreign_ports:
                problems.append(f"ports of other bridges changed: {', '.join(foreign) or 'none'}")
        return problems

    def missed(self) -> list[str]:
        """What was applied against a fresh read of the database: a change that never
        reached the change log (or a hole given up too early) shows here."""
        if self.applied is None:
            return []
        cursor = self.cursor

        def tx(conn: Connection) -> tuple[Snapshot, list[tuple[int, str, str]]]:
            self.metrics.snapshot_reads.inc()
            snap = snapmod.read_snapshot(conn, self.host, self.ctx.config.effective_vpn_ip)
            # read after the snapshot: a change committed meanwhile is pending, not missed
            return snap, cursor.unseen(snapmod.changes_after(conn, cursor.low, self.host, snap.networks))

        snap, pending = run(self.ctx, tx, write=False)
        if pending:
            return []  # the next partial sync brings them
        fresh = desired_state(snap, self.host, self.ctx.config)
        # queued releases leave the snapshot without a change being logged; foreign ports
        # come from the kernel, not the database
        if dataclasses.replace(fresh, releases=(), foreign_ports=()) == dataclasses.replace(
            self.applied, releases=(), foreign_ports=()
        ):
            return []
        return ["the database differs from what was applied (a change the log did not bring)"]

    # --- the loop ----------------------------------------------------------------------

    def step(self) -> None:
        """One turn of the loop: sync what is needed, probe, and repair drift."""
        if self.needs_full:
            self.full_sync()
            return
        self.partial_sync()
        now = self.clock()
        if now - self._last_probe >= PROBE_INTERVAL:
            self._last_probe = now
            problems = self.probe()
            if not problems and now - self._last_resync >= self.ctx.config.agent_resync_interval:
                self._last_resync = now
                if self.realizers.vpn is not None and self.applied is not None:
                    self.realizers.vpn.maintain(self.applied.appliances)
                # a skipped row is reported, not repaired: a full sync cannot fix the database;
                # an unknown port is dropped by the filter already, a sync cannot fix it either
                drift = self.check(self.applied, self.snap)
                problems = [p for p in drift if not p.startswith(("database: ", UNKNOWN))]
                problems += self.missed()
            if problems:
                log.warning("drift on %s, repairing: %s", self.host, "; ".join(problems))
                self.metrics.drift_repairs.inc()
                self.full_sync()


def _copy(snap: Snapshot) -> Snapshot:
    """A copy of ``snap`` whose dictionaries can be edited (the values are immutable)."""
    return replace(
        snap,
        networks=dict(snap.networks),
        vifs=dict(snap.vifs),
        host_addresses=dict(snap.host_addresses),
        floating=dict(snap.floating),
        underlay=dict(snap.underlay),
        network_hosts={k: set(v) for k, v in snap.network_hosts.items()},
    )


def _summary(state: HostState) -> str:
    nat = state.nat
    return (
        f"{len(state.bridges)} bridges, {len(state.dhcp)} dhcp servers,"
        f" {len(nat.floating) if nat else 0} floating IPs, {len(state.vifs)} VIF filters,"
        f" {len(state.appliances)} VPN appliances"
    )


def _some(addresses: set[str], shown: int = 5) -> str:
    ordered = sorted(addresses, key=lambda a: tuple(int(x) for x in a.split(".")))
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more
