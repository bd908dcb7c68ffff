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


_VIFS = sa.select(
    virtual_interfaces.c.uuid,
    virtual_interfaces.c.address.label("mac"),
    virtual_interfaces.c.network_id,
    virtual_interfaces.c.instance_uuid,
    instances.c.host,
    instances.c.hostname,
    fixed_ips.c.address,
).select_from(
    virtual_interfaces.join(instances, instances.c.uuid == virtual_interfaces.c.instance_uuid).outerjoin(
        fixed_ips,
        sa.and_(
            fixed_ips.c.virtual_interface_id == virtual_interfaces.c.id,
            fixed_ips.c.allocated.is_(True),
        ),
    )
)


def _add_vifs(snap: Snapshot, rows: Iterable[Any]) -> None:
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


def _served(snap: Snapshot, host: str) -> list[int]:
    """The single-host networks ``host`` is the gateway and DHCP server of."""
    return sorted(n.id for n in snap.networks.values() if not n.multi_host and n.host == host)


def _vlan_ids(snap: Snapshot, ids: Iterable[int]) -> list[int]:
    return sorted(i for i in ids if i in snap.networks and snap.networks[i].vlan is not None)


def _read_peers(conn: Connection, snap: Snapshot, host: str, net_ids: Iterable[int]) -> None:
    """Of ``net_ids``, the VLAN networks' hosts (VXLAN peers): their gateway addresses
    and the hosts of their instances; and the underlay addresses of every peer."""
    vlan = _vlan_ids(snap, net_ids)
    for nid in vlan:
        snap.network_hosts.pop(nid, None)
    if vlan:
        for k in [k for k in snap.host_addresses if k[0] in vlan and k[1] != host]:
            del snap.host_addresses[k]
        for h in conn.execute(
            sa.select(fixed_ips.c.network_id, fixed_ips.c.host, fixed_ips.c.address).where(
                fixed_ips.c.network_id.in_(vlan), fixed_ips.c.host.is_not(None)
            )
        ):
            snap.host_addresses[(h.network_id, h.host)] = h.address
        nh: dict[int, set[str]] = defaultdict(set)
        for p in conn.execute(
            sa.select(virtual_interfaces.c.network_id, instances.c.host)
            .select_from(
                virtual_interfaces.join(instances, instances.c.uuid == virtual_interfaces.c.instance_uuid)
            )
            .where(virtual_interfaces.c.network_id.in_(vlan))
            .distinct()
        ):
            nh[p.network_id].add(p.host)
        snap.network_hosts.update(nh)
    peers = {host}
    for hs in snap.network_hosts.values():
        peers |= hs
    peers |= {
        h for nid, h in snap.host_addresses if nid in snap.networks and snap.networks[nid].vlan is not None
    }
    # a single-host VLAN network's gateway host is a peer of every host with its instances
    peers |= {n.host for n in snap.networks.values() if n.vlan is not None and n.host and not n.multi_host}
    wanted = sorted(peers - set(snap.underlay))
    if wanted:
        for u in conn.execute(
            sa.select(hosts.c.name, hosts.c.underlay_address).where(hosts.c.name.in_(wanted))
        ):
            if u.underlay_address:
                snap.underlay[u.name] = u.underlay_address


def read_snapshot(conn: Connection, host: str, vpn_ip: str | None = None) -> Snapshot:
    """What ``host`` needs, read in one transaction (a consistent view), and nothing more.

    Its share of the cloud: the networks it serves or has instances on, their VIFs on
    this host (every VIF of a network only where this host is its DHCP server), its own
    gateway addresses, its floating IPs, its queued DHCP releases, and for VLAN networks
    the hosts sharing the segment with their underlay addresses. Every query is served by
    an index (docs/benchmarks.md shows the plans); none scans a cloud-wide table.
    """
    snap = Snapshot()
    net_ids: set[int] = set(conn.execute(sa.select(networks.c.id).where(networks.c.host == host)).scalars())
    if vpn_ip:  # multi-host VLAN networks whose VPN this host holds (vpn_ip): the appliance
        net_ids |= set(
            conn.execute(
                sa.select(networks.c.id).where(networks.c.vpn_public_address == vpn_ip, networks.c.multi_host)
            ).scalars()
        )
    for h in conn.execute(
        sa.select(fixed_ips.c.network_id, fixed_ips.c.address).where(fixed_ips.c.host == host)
    ):
        snap.host_addresses[(h.network_id, host)] = h.address
        net_ids.add(h.network_id)
    local = conn.execute(_VIFS.where(instances.c.host == host)).all()
    net_ids |= {r.network_id for r in local}
    if net_ids:
        for row in conn.execute(sa.select(networks).where(networks.c.id.in_(sorted(net_ids)))):
            net = Network.from_row(row)
            snap.networks[net.id] = net
    _add_vifs(snap, local)
    served = _served(snap, host)
    if served:
        _add_vifs(
            snap,
            conn.execute(_VIFS.where(virtual_interfaces.c.network_id.in_(served), instances.c.host != host)),
        )
    for f in conn.execute(_FLOATING, {"host": host}):
        snap.floating[f.address] = SnapFloating(f.address, f.fixed_address, f.interface)
    snap.floating_addresses = frozenset(snap.floating)
    snap.floating_interfaces = frozenset(f.interface for f in snap.floating.values())
    snap.releases = _releases(conn, host)
    _read_peers(conn, snap, host, snap.networks)
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


def _releases(conn: Connection, host: str) -> tuple[tuple[int, str, str], ...]:
    return tuple(
        (r.network_id, r.address, r.mac)
        for r in conn.execute(
            sa.select(dhcp_releases.c.network_id, dhcp_releases.c.address, dhcp_releases.c.mac).where(
                dhcp_releases.c.host == host
            )
        )
    )


def refresh_instances(
    conn: Connection, snap: Snapshot, host: str, uuids: Iterable[str], networks_named: Iterable[int] = ()
) -> bool:
    """Re-read a few instances into ``snap``: their VIFs (and fixed IPs), this host's
    gateway addresses and the peers of their networks, the floating IPs NATed to them here
    and the queued releases. ``networks_named``: networks the changes were scoped to (a
    host joined or left them: their peers are read again even when none of the changed
    VIFs is this host's). False when a network enters this host's share (the caller then
    reads a fresh snapshot)."""
    wanted = sorted(set(uuids))
    if not wanted:
        return True
    old = [v for v in snap.vifs.values() if v.instance_uuid in wanted]
    old_fixed = {a for v in old for a in v.addresses}
    served = _served(snap, host)
    cond = instances.c.host == host
    if served:
        cond = sa.or_(cond, virtual_interfaces.c.network_id.in_(served))
    rows = conn.execute(_VIFS.where(virtual_interfaces.c.instance_uuid.in_(wanted), cond)).all()
    if any(r.network_id not in snap.networks for r in rows):
        return False
    for v in old:
        del snap.vifs[v.uuid]
    _add_vifs(snap, rows)
    nets = {v.network_id for v in old} | {r.network_id for r in rows}
    peers_of = nets | {n for n in networks_named if n in snap.networks}
    for nid in nets:
        snap.host_addresses.pop((nid, host), None)
    if nets:
        for h in conn.execute(
            sa.select(fixed_ips.c.network_id, fixed_ips.c.address).where(
                fixed_ips.c.host == host, fixed_ips.c.network_id.in_(sorted(nets))
            )
        ):
            snap.host_addresses[(h.network_id, host)] = h.address
    _read_peers(conn, snap, host, peers_of)
    # floating IPs NATed here that pointed at the instances' old addresses, or point at
    # their new ones
    stale = [a for a, f in snap.floating.items() if f.fixed_address in old_fixed]
    refresh_floating(conn, snap, host, stale)
    for f in conn.execute(_FLOATING.where(fixed_ips.c.instance_uuid.in_(wanted)), {"host": host}):
        snap.floating[f.address] = SnapFloating(f.address, f.fixed_address, f.interface)
    snap.floating_addresses = frozenset(snap.floating)
    snap.floating_interfaces = frozenset(f.interface for f in snap.floating.values())
    snap.releases = _releases(conn, host)
    return True


def networks_of_changes(conn: Connection, ids: Iterable[int]) -> set[int]:
    """The networks the change rows ``ids`` are scoped to."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    return set(
        conn.execute(
            sa.select(changes.c.network_id).where(changes.c.id.in_(wanted), changes.c.network_id.is_not(None))
        ).scalars()
    )


def pool_members(conn: Connection, addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` are floating IPs (of any host): one index probe each."""
    wanted = sorted(set(addresses))
    out: set[str] = set()
    for i in range(0, len(wanted), 1000):
        out |= set(
            conn.execute(
                sa.select(floating_ips.c.address).where(floating_ips.c.address.in_(wanted[i : i + 1000]))
            ).scalars()
        )
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


def _in_scope(host: str, network_ids: Iterable[int]) -> Any:
    nets = sorted(set(network_ids))
    cond = sa.or_(changes.c.host == host, sa.and_(changes.c.host.is_(None), changes.c.network_id.is_(None)))
    if nets:
        cond = sa.or_(cond, changes.c.network_id.in_(nets))
    return cond


def changes_after(
    conn: Connection, after: int, host: str | None = None, network_ids: Iterable[int] = ()
) -> list[tuple[int, str, str]]:
    """The changes above ``after``: with ``host``, only those of its scope (its own host,
    the networks ``network_ids`` it carries, and the unscoped ones), by index."""
    stmt = sa.select(changes.c.id, changes.c.kind, changes.c.ref).where(changes.c.id > after)
    if host is not None:
        stmt = stmt.where(_in_scope(host, network_ids))
    return [(r.id, r.kind, r.ref) for r in conn.execute(stmt.order_by(changes.c.id))]


def scoped_changes_after(
    conn: Connection, after: int, host: str, network_ids: Iterable[int]
) -> tuple[list[tuple[int, str, str]], list[int]]:
    """(changes of ``host``'s scope above ``after``, ids of every other change above it).

    The other ids are read (from the primary key alone, no row) so that the cursor can
    tell a change of another host from a hole left by a transaction still committing."""
    mine = changes_after(conn, after, host, network_ids)
    ids = set(change_ids_after(conn, after)) - {i for i, _, _ in mine}
    return mine, sorted(ids)


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
            # Other hosts' VXLAN peers depend on it: the hosts sharing its networks.
            from novanet.service.context import record

            nets = set(
                conn.execute(
                    sa.select(virtual_interfaces.c.network_id)
                    .select_from(
                        instances.join(
                            virtual_interfaces, virtual_interfaces.c.instance_uuid == instances.c.uuid
                        )
                    )
                    .where(instances.c.host == host)
                    .distinct()
                ).scalars()
            )
            nets |= set(
                conn.execute(sa.select(fixed_ips.c.network_id).where(fixed_ips.c.host == host)).scalars()
            )
            record(ctx, conn, "host", host, hosts=[host], networks=nets)

    run(ctx, tx)
