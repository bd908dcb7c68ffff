"""Reading what one host needs from the database, in full or for a few changed objects."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import (
    changes,
    dhcp_releases,
    fixed_ips,
    floating_ips,
    hosts,
    instances,
    networks,
    virtual_interfaces,
    vpns,
)
from novanet.domain.models import Network
from novanet.host.desired import SnapFloating, Snapshot, SnapVif
from novanet.service.context import Ctx, run, utcnow

_FLOATING = (
    sa.select(floating_ips.c.address, fixed_ips.c.address.label("fixed_address"), floating_ips.c.interface)
    .select_from(floating_ips.join(fixed_ips, fixed_ips.c.id == floating_ips.c.fixed_ip_id))
    .where(floating_ips.c.host == sa.bindparam("host"))
)


def read_snapshot(conn: Connection, host: str, vpn_ip: str | None = None) -> Snapshot:
    """Everything ``host`` needs, read in one transaction (a consistent view)."""
    snap = Snapshot()
    for row in conn.execute(sa.select(networks)):
        net = Network.from_row(row)
        snap.networks[net.id] = net
    hosted = [n.id for n in snap.networks.values() if not n.multi_host and n.host == host]
    cond = instances.c.host == host
    if hosted:
        cond = sa.or_(cond, virtual_interfaces.c.network_id.in_(hosted))
    rows = conn.execute(
        sa.select(
            virtual_interfaces.c.uuid,
            virtual_interfaces.c.address.label("mac"),
            virtual_interfaces.c.network_id,
            virtual_interfaces.c.instance_uuid,
            instances.c.host,
            instances.c.hostname,
            fixed_ips.c.address,
        )
        .select_from(
            virtual_interfaces.join(
                instances, instances.c.uuid == virtual_interfaces.c.instance_uuid
            ).outerjoin(
                fixed_ips,
                sa.and_(
                    fixed_ips.c.virtual_interface_id == virtual_interfaces.c.id,
                    fixed_ips.c.allocated.is_(True),
                ),
            )
        )
        .where(cond)
    ).all()
    addrs: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Any] = {}
    for r in rows:
        first.setdefault(r.uuid, r)
        if r.address is not None:
            addrs[r.uuid].append(r.address)
    for uuid, r in first.items():
        snap.vifs[uuid] = SnapVif(
            uuid=uuid,
            mac=r.mac,
            network_id=r.network_id,
            instance_uuid=r.instance_uuid,
            instance_host=r.host,
            hostname=r.hostname,
            addresses=tuple(sorted(addrs.get(uuid, ()))),
        )
    for h in conn.execute(
        sa.select(fixed_ips.c.network_id, fixed_ips.c.host, fixed_ips.c.address).where(
            fixed_ips.c.host.is_not(None)
        )
    ):
        snap.host_addresses[(h.network_id, h.host)] = h.address
    for f in conn.execute(_FLOATING, {"host": host}):
        snap.floating[f.address] = SnapFloating(f.address, f.fixed_address, f.interface)
    pool = conn.execute(sa.select(floating_ips.c.address, floating_ips.c.interface)).all()
    snap.floating_addresses = frozenset(r.address for r in pool)
    snap.floating_interfaces = frozenset(r.interface for r in pool)
    snap.releases = tuple(
        (r.network_id, r.address, r.mac)
        for r in conn.execute(
            sa.select(dhcp_releases.c.network_id, dhcp_releases.c.address, dhcp_releases.c.mac).where(
                dhcp_releases.c.host == host
            )
        )
    )
    for u in conn.execute(sa.select(hosts.c.name, hosts.c.underlay_address)):
        if u.underlay_address:
            snap.underlay[u.name] = u.underlay_address
    nh: dict[int, set[str]] = defaultdict(set)
    for p in conn.execute(
        sa.select(virtual_interfaces.c.network_id, instances.c.host)
        .select_from(
            virtual_interfaces.join(instances, instances.c.uuid == virtual_interfaces.c.instance_uuid)
        )
        .distinct()
    ):
        nh[p.network_id].add(p.host)
    snap.network_hosts = dict(nh)
    snap.vpn_pools = _vpn_pools(conn, snap, host, vpn_ip)
    return snap


def _vpn_pools(conn: Connection, snap: Snapshot, host: str, vpn_ip: str | None) -> dict[int, tuple[str, str]]:
    """The clients' range of each VLAN network this host serves whose project's VPN is
    wanted: only those networks' VPN rows are read."""
    from novanet.domain.modes import VLAN
    from novanet.service.vpn import client_range

    served = [
        n
        for n in snap.networks.values()
        if n.manager == VLAN.name
        and n.project_id is not None
        and ((not n.multi_host and n.host == host) or (n.multi_host and n.vpn_public_address == vpn_ip))
    ]
    if not served:
        return {}
    projects = {n.project_id for n in served}
    wanted = set(conn.execute(sa.select(vpns.c.project_id).where(vpns.c.project_id.in_(projects))).scalars())
    out = {}
    for n in served:
        if n.project_id in wanted:
            try:
                pool = client_range(conn, n)
            except ValueError:  # a malformed cidr: screen reports the network
                continue
            if pool is not None:
                out[n.id] = pool
    return out


def refresh_floating(conn: Connection, snap: Snapshot, host: str, addresses: Iterable[str]) -> None:
    """Re-read a few floating IPs into ``snap`` (the hot path of associate/disassociate)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return
    found = {
        r.address: r
        for r in conn.execute(_FLOATING.where(floating_ips.c.address.in_(wanted)), {"host": host})
    }
    for a in wanted:
        r = found.get(a)
        if r is None:
            snap.floating.pop(a, None)
        else:
            snap.floating[a] = SnapFloating(r.address, r.fixed_address, r.interface)


def latest_change(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(changes.c.id), 0))).scalar_one())


def change_ids_after(conn: Connection, after: int) -> list[int]:
    """The ids of the changes visible now above ``after`` (a full sync's window)."""
    return list(conn.execute(sa.select(changes.c.id).where(changes.c.id > after)).scalars())


def changes_after(conn: Connection, after: int) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        sa.select(changes.c.id, changes.c.kind, changes.c.ref)
        .where(changes.c.id > after)
        .order_by(changes.c.id)
    )
    return [(r.id, r.kind, r.ref) for r in rows]


def register_host(ctx: Ctx, host: str, underlay_address: str | None) -> None:
    """Upsert this host's row so other hosts learn its underlay address."""

    def tx(conn: Connection) -> None:
        now = utcnow()
        existing = conn.execute(sa.select(hosts.c.underlay_address).where(hosts.c.name == host)).first()
        if existing is None:
            conn.execute(hosts.insert().values(name=host, underlay_address=underlay_address, created_at=now))
            changed = True
        else:
            changed = existing.underlay_address != underlay_address
            conn.execute(
                hosts.update()
                .where(hosts.c.name == host)
                .values(underlay_address=underlay_address, updated_at=now)
            )
        if changed:
            # Other hosts' VXLAN peers depend on it.
            from novanet.service.context import record

            record(ctx, conn, "host", host)

    run(ctx, tx)
