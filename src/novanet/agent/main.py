"""Wiring of a real agent: kernel backends, the change waiter, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from novanet.agent import dhcpbridge
from novanet.agent.loop import Agent, Realizers
from novanet.agent.metrics import Metrics
from novanet.agent.private import write_private
from novanet.agent.snapshot import register_host
from novanet.domain import names
from novanet.host.dnsmasq.config import DnsmasqOptions
from novanet.host.dnsmasq.process import SubprocessRunner
from novanet.host.dnsmasq.realizer import DnsmasqManager
from novanet.host.netlink import realizer as netlink
from novanet.host.netlink.pyroute import PyrouteLinks
from novanet.host.nft.backend import RealNft
from novanet.host.owned import OwnedBridges
from novanet.service.context import CHANNEL, Ctx
from novanet.vpn.appliance import ApplianceManager

log = logging.getLogger("novanet.agent")


def build_agent(ctx: Ctx, host: str, config_files: Sequence[str]) -> Agent:
    """An agent acting on the network namespace this process runs in."""
    cfg = ctx.config
    base = Path(cfg.effective_networks_path).absolute() / names.host_name(host)
    db_file = base / "database"
    write_private(db_file, ctx.engine.url.render_as_string(hide_password=False))
    lease_script = dhcpbridge.script_argv(config_files, db_file, sys.executable)
    realizers = Realizers(
        links=PyrouteLinks(),
        nft=RealNft(),
        dhcp=DnsmasqManager(
            cfg.effective_networks_path,
            host,
            lease_script,
            SubprocessRunner(),
            DnsmasqOptions(config_file=cfg.dnsmasq_config_file),
        ),
        arp=netlink.gratuitous_arp,
        vpn=ApplianceManager(cfg, Path(cfg.state_path).absolute() / "vpn"),
        owned=OwnedBridges(
            Path(cfg.effective_networks_path).absolute() / names.host_name(host) / "bridges.json"
        ),
    )
    return Agent(ctx, host, realizers, Metrics())


class ChangeWaiter:
    """Sleeps until the change log may hold something new (or ``timeout`` passed).

    PostgreSQL: LISTEN on the channels of this host's scope (its own host's, the
    networks' it carries, and the channel of unscoped changes), woken by the NOTIFY a
    change sends on commit to the hosts and networks it concerns: a change on another
    host wakes nothing here. SQLite: every
    agent_poll_interval, a stat of the database and its write-ahead log, which every
    commit changes; the agent reads the database only when they changed (a read every
    10 ms kept an idle agent at ~8% of a core; the stat, ~2%).
    """

    def __init__(
        self, ctx: Ctx, stop: threading.Event, channels: Callable[[], set[str]] | None = None
    ) -> None:
        self.ctx, self.stop = ctx, stop
        self.channels = channels or (lambda: {CHANNEL})
        self._listening: set[str] = set()
        self._pg: Any = None
        db = ctx.engine.url.database if not ctx.is_postgres else None
        self._files = (
            [Path(db), Path(f"{db}-wal")] if db and db != ":memory:" and not db.startswith("file:") else []
        )
        self._seen: tuple[tuple[int, int, int] | None, ...] | None = None

    def _signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for f in self._files:
            try:
                st = f.stat()
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def _wait_sqlite(self, timeout: float) -> None:
        interval = self.ctx.config.agent_poll_interval
        if not self._files:
            self.stop.wait(min(timeout, interval))
            return
        deadline = time.monotonic() + timeout
        while True:
            # taken before the agent reads: a commit after it wakes the next wait
            sig = self._signature()
            if sig != self._seen:
                self._seen = sig
                return
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.wait(min(interval, left)):
                return

    def wait(self, timeout: float) -> None:
        if not self.ctx.is_postgres:
            self._wait_sqlite(timeout)
            return
        try:
            if self._pg is None:
                raw = self.ctx.engine.raw_connection()
                self._pg = raw
                fresh: Any = raw.driver_connection
                fresh.autocommit = True
                self._listening = set()
            driver: Any = self._pg.driver_connection
            want = self.channels()
            # channel names are made by host_channel/network_channel: plain identifiers
            for ch in sorted(want - self._listening):
                driver.execute(f"LISTEN {ch}")
            for ch in sorted(self._listening - want):
                driver.execute(f"UNLISTEN {ch}")
            self._listening = want
            for _ in self._pg.driver_connection.notifies(timeout=min(timeout, 1.0), stop_after=1):
                break
        except Exception as exc:  # a lost connection falls back to polling until it is back
            log.warning("LISTEN failed: %s", exc)
            self.close()
            self.stop.wait(self.ctx.config.agent_poll_interval)

    def close(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            finally:
                self._pg = None


def _heartbeats(agent: Agent, role: str, stop: threading.Event) -> None:
    """Say every report_interval that this host's agent is alive (`novanet service list`).
    A failed heartbeat is logged and tried again; it never stops the agent."""
    from novanet.service import hosts

    while True:
        try:
            hosts.heartbeat(agent.ctx, agent.host, role)
        except Exception as exc:
            log.warning("heartbeat of %s failed: %s", agent.host, exc)
        if stop.wait(agent.ctx.config.report_interval):
            return


def _lease_spools(agent: Agent, stop: threading.Event, interval: float = 1.0) -> None:
    """Apply the DHCP lease events waiting in this host's spools, every ``interval``: the
    safety net behind the drainer each event starts (a drainer that died, events kept
    through a database outage). An outage is logged once, not every second."""
    from novanet.agent import leasespool
    from novanet.domain.errors import DatabaseUnavailable

    spools = getattr(agent.realizers.dhcp, "spools", None)
    if spools is None:  # a DHCP realizer without spools (a fake): nothing to apply
        return
    down = False
    while not stop.wait(interval):
        try:
            for spool in spools():
                leasespool.drain(agent.ctx, spool)
            if down:
                log.info("lease events are reaching the database again")
            down = False
        except DatabaseUnavailable as exc:
            if not down:
                log.warning("lease events kept on disk until the database is back: %s", exc)
            down = True
        except Exception as exc:
            log.warning("lease events of %s: %s", agent.host, exc)


def run_agent(
    agent: Agent,
    *,
    metrics_port: int | None = None,
    underlay: str | None = None,
    stop: threading.Event | None = None,
    role: str = "agent",
) -> int:
    """Run until SIGTERM or SIGINT (or until ``stop`` is set, when the caller owns the
    signals, as `novanet serve` does). The host is left as it is: a restarted agent
    converges it again without tearing anything down (no DHCP or NAT outage)."""
    if stop is None:
        stop = threading.Event()
        halt = stop

        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            halt.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    if metrics_port is not None:
        agent.metrics.serve(metrics_port)
    register_host(agent.ctx, agent.host, underlay)
    threading.Thread(target=_heartbeats, args=(agent, role, stop), name="heartbeat", daemon=True).start()
    threading.Thread(target=_lease_spools, args=(agent, stop), name="lease-spool", daemon=True).start()
    waiter = ChangeWaiter(agent.ctx, stop, agent.channels)
    backoff = 0.5
    try:
        while not stop.is_set():
            try:
                agent.step()
                backoff = 0.5
                waiter.wait(1.0)
            except Exception as exc:  # the loop survives; the next turn is a full sync
                log.error("sync of %s failed: %s", agent.host, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                agent.needs_full = True
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
    finally:
        waiter.close()
    return 0
