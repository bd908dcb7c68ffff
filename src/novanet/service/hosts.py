"""Hosts that run an agent: heartbeats, and which are up (nova's service_down_time).

An agent writes ``heartbeat_at`` every ``report_interval`` seconds; a host whose last
heartbeat is older than ``service_down_time`` is down. Operations that need a host's
agent (a floating IP's NAT, an instance's DHCP) report a down agent in their answer
instead of leaving the caller to wait for a change that nobody will make.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import fixed_ips, hosts, instances, networks
from novanet.domain import names
from novanet.service.context import Ctx, run, utcnow

ROLES = ("agent", "serve")


def heartbeat(ctx: Ctx, host: str, role: str = "agent") -> None:
    """Say that ``host``'s agent is alive (creates the host's row if it has none)."""
    names.host_name(host)

    def tx(conn: Connection) -> None:
        now = utcnow()
        res = conn.execute(hosts.update().where(hosts.c.name == host).values(role=role, heartbeat_at=now))
        if res.rowcount == 0:
            conn.execute(hosts.insert().values(name=host, role=role, heartbeat_at=now, created_at=now))

    run(ctx, tx)


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _is_up(ctx: Ctx, beat: dt.datetime | None, now: dt.datetime) -> bool:
    return beat is not None and (now - beat).total_seconds() <= ctx.config.service_down_time


def list_services(ctx: Ctx) -> list[dict[str, Any]]:
    """Every host with its agent's role, last heartbeat and state (up/down)."""

    def tx(conn: Connection) -> list[dict[str, Any]]:
        now = utcnow()
        net_hosts = set(conn.execute(sa.select(networks.c.host).distinct()).scalars())
        gw_hosts = set(
            conn.execute(
                sa.select(fixed_ips.c.host).where(fixed_ips.c.host.is_not(None)).distinct()
            ).scalars()
        )
        compute = set(conn.execute(sa.select(instances.c.host).distinct()).scalars())
        out = []
        for r in conn.execute(sa.select(hosts).order_by(hosts.c.name)):
            duties = []
            if r.name in net_hosts or r.name in gw_hosts:
                duties.append("network")
            if r.name in compute:
                duties.append("compute")
            out.append(
                {
                    "host": r.name,
                    "role": r.role,
                    "duties": duties,
                    "underlay_address": r.underlay_address,
                    "last_heartbeat": _iso(r.heartbeat_at),
                    "state": "up" if _is_up(ctx, r.heartbeat_at, now) else "down",
                }
            )
        return out

    return run(ctx, tx, write=False)


def down_agents(ctx: Ctx, conn: Connection, wanted: Iterable[str | None]) -> list[str]:
    """Which of the hosts in ``wanted`` have no live agent, as readable sentences."""
    down = down_agents_by_host(ctx, conn, wanted)
    return [down[h] for h in sorted(down)]


def down_agents_by_host(ctx: Ctx, conn: Connection, wanted: Iterable[str | None]) -> dict[str, str]:
    """The hosts in ``wanted`` that have no live agent, each with a readable sentence."""
    want = sorted({h for h in wanted if h})
    if not want:
        return {}
    now = utcnow()
    stmt = sa.select(hosts.c.name, hosts.c.heartbeat_at).where(hosts.c.name.in_(want))
    beats = {r.name: r.heartbeat_at for r in conn.execute(stmt)}
    out = {}
    for h in want:
        if h not in beats:
            out[h] = f"host {h} has no agent registered; nothing realizes this change there yet"
        elif not _is_up(ctx, beats[h], now):
            out[h] = (
                f"the agent of host {h} is down (last heartbeat {_iso(beats[h]) or 'never'});"
                " the change is applied when it comes back"
            )
    return out


def agents_down(ctx: Ctx, wanted: Iterable[str | None]) -> list[str]:
    """``down_agents`` in its own read-only unit of work."""
    items = list(wanted)
    return run(ctx, lambda conn: down_agents(ctx, conn, items), write=False)


def agents_down_by_host(ctx: Ctx, wanted: Iterable[str | None]) -> dict[str, str]:
    """``down_agents_by_host`` in its own read-only unit of work."""
    items = list(wanted)
    return run(ctx, lambda conn: down_agents_by_host(ctx, conn, items), write=False)
