"""Allocating networks for instances: many instances in one transaction.

One request per instance; a batch of them is one unit of work with one commit, and the
statements are set-based: one read for the instances that exist already, one insert for
the instances, one for their VIFs, one probe of the free-list index per network for all
the addresses it gives and one executemany to claim them, one insert for the change log,
one wake-up per agent concerned. A single allocation is a batch of one, so every rule
lives here once. The batch is all or nothing: a member that is refused (quota, a taken
address, an unknown network ...) refuses the whole batch, which changes nothing.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import fixed_ips, floating_ips, instances, networks, virtual_interfaces
from novanet.domain import names
from novanet.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NoMoreNetworks,
    NotFound,
    QuotaExceeded,
)
from novanet.domain.mac import random_mac
from novanet.domain.models import Network
from novanet.domain.modes import VLAN, Mode
from novanet.domain.netinfo import FixedAddress, VifView, network_info
from novanet.service import fixed as fixedsvc
from novanet.service import floating as floatingsvc
from novanet.service import scope
from novanet.service.context import Ctx, Retry, lock, record_many, run, utcnow
from novanet.service.networks import find_network

# A batch larger than this is refused: one transaction holds its rows' locks until it commits.
MAX_BATCH = 1000


@dataclass(frozen=True)
class RequestedNetwork:
    network: str  # uuid (or cidr)
    address: str | None = None


@dataclass(frozen=True)
class AllocateRequest:
    instance_uuid: str
    project_id: str
    host: str
    requested: Sequence[RequestedNetwork] = ()
    vpn: bool = False
    hostname: str | None = None


@dataclass
class _Member:
    req: AllocateRequest
    uuid: str
    hostname: str
    nets: list[tuple[Network, str | None]] = field(default_factory=list)
    views: list[VifView] = field(default_factory=list)


def check_request(mode: Mode, req: AllocateRequest) -> tuple[str, str]:
    """Refuse a malformed request before any database work; returns the normalized
    instance uuid and hostname."""
    uuid = names.instance_uuid(req.instance_uuid)
    names.project_id(req.project_id)
    names.host_name(req.host)
    hostname = names.dns_hostname(req.hostname) if req.hostname else f"server-{uuid}"
    if req.vpn and not mode.vlan:
        raise InvalidInput(f"--vpn needs VLAN mode; the network manager is {mode.name}")
    if req.vpn and len(req.requested) > 1:
        raise InvalidInput("a VPN instance takes one network")
    seen: set[str] = set()
    for r in req.requested:
        if r.network in seen:
            raise InvalidInput(f"network {r.network} is requested twice")
        seen.add(r.network)
    return uuid, hostname


# Statements of the allocation hot path, built once.
_EXISTING = sa.select(instances.c.uuid).where(instances.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
_INSERT_INSTANCE = instances.insert()
_INSERT_VIFS = virtual_interfaces.insert().returning(virtual_interfaces.c.id, sort_by_parameter_order=True)
_VLAN = networks.c.manager == VLAN.name
_ORDER = (networks.c.priority.is_(None), networks.c.priority, networks.c.id)
_FLAT_NETWORKS = (
    sa.select(networks)
    .where(
        networks.c.manager != VLAN.name,
        sa.or_(networks.c.project_id.is_(None), networks.c.project_id == sa.bindparam("project_id")),
    )
    .order_by(*_ORDER)
)
_NAME_HOST = (
    networks.update()
    .where(networks.c.id == sa.bindparam("net_id"), networks.c.host.is_(None))
    .values(host=sa.bindparam("v_host"), updated_at=sa.bindparam("v_now"))
)
_QUOTA_USED = (
    sa.select(sa.func.count())
    .select_from(fixed_ips.join(instances, instances.c.uuid == fixed_ips.c.instance_uuid))
    .where(instances.c.project_id == sa.bindparam("project"), fixed_ips.c.allocated.is_(True))
)


def allocate_many(ctx: Ctx, mode: Mode, reqs: Sequence[AllocateRequest]) -> list[list[dict[str, Any]]]:
    """Create the VIFs and fixed IPs (and floating IP when auto-assigned) of every instance
    in ``reqs`` in one transaction; returns each one's network info, in order."""
    if len(reqs) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} instances, not {len(reqs)}")
    members = [_Member(r, *check_request(mode, r)) for r in reqs]
    twice = [u for u, n in Counter(m.uuid for m in members).items() if n > 1]
    if twice:
        raise InvalidInput(f"instance {twice[0]} appears twice in the batch")
    if not members:
        return []

    def tx(conn: Connection) -> list[list[dict[str, Any]]]:
        for m in members:
            m.nets, m.views = [], []
        found = conn.execute(_EXISTING, {"uuids": [m.uuid for m in members]}).scalars().first()
        if found is not None:
            raise Conflict(f"instance {found} already has networks; deallocate it first")
        now = utcnow()
        conn.execute(
            _INSERT_INSTANCE,
            [
                {
                    "uuid": m.uuid,
                    "project_id": m.req.project_id,
                    "host": m.req.host,
                    "hostname": m.hostname,
                    "created_at": now,
                }
                for m in members
            ],
        )
        _choose_networks(ctx, conn, mode, members)
        wanted: Counter[str] = Counter()
        for m in members:
            wanted[m.req.project_id] += len(m.nets)
        for project in sorted(wanted):  # one order for every batch: no lock cycles
            _check_fixed_quota(ctx, conn, project, wanted[project])
        _allocate_addresses(ctx, conn, members)
        if ctx.config.auto_assign_floating_ip:
            for m in members:
                _auto_floating(ctx, conn, m)
        scopes = scope.batch_scope(conn, [(m.uuid, m.req.host, [n.id for n, _ in m.nets]) for m in members])
        record_many(
            ctx, conn, "instance", [(m.uuid, h, n) for m, (h, n) in zip(members, scopes, strict=True)]
        )
        # Built from what was just written: no second read of the same rows.
        return [network_info(m.views) for m in members]

    return run(ctx, tx)


def _choose_networks(ctx: Ctx, conn: Connection, mode: Mode, members: list[_Member]) -> None:
    """Each member's networks. Projects in one order (VLAN takes a lock per project)."""
    cache: dict[str, list[Network]] = {}
    for m in sorted(members, key=lambda m: m.req.project_id):
        m.nets = _networks_for(ctx, conn, mode, m.req, cache)


def _networks_for(
    ctx: Ctx, conn: Connection, mode: Mode, req: AllocateRequest, cache: dict[str, list[Network]]
) -> list[tuple[Network, str | None]]:
    if req.requested:
        out = []
        for r in req.requested:
            net = find_network(conn, r.network)
            if (net.manager == VLAN.name) != mode.vlan:
                raise InvalidInput(
                    f"network {net.uuid} was made by the {net.manager} manager; this is {mode.name}"
                )
            if net.project_id is not None and net.project_id != req.project_id:
                raise Forbidden(f"network {net.uuid} belongs to another project")
            if mode.vlan and net.project_id is None:
                raise Forbidden(f"network {net.uuid} is not associated with project {req.project_id}")
            out.append((net, r.address))
        return out
    nets = cache.get(req.project_id)
    if nets is None:
        if mode.vlan:
            nets = _project_networks(ctx, conn, req.project_id)
        else:
            rows = conn.execute(_FLAT_NETWORKS, {"project_id": req.project_id}).all()
            nets = [Network.from_row(r) for r in rows]
        cache[req.project_id] = nets
    if not nets:
        raise NotFound(
            f"no {mode.name} network is available to project {req.project_id}; create one with"
            " `novanet network create`"
        )
    return [(n, None) for n in nets]


def _project_networks(ctx: Ctx, conn: Connection, project: str) -> list[Network]:
    """VLAN mode: the project's networks; on its first boot, the first unowned one."""
    lock(ctx, conn, f"project-networks:{project}")
    rows = conn.execute(
        sa.select(networks).where(_VLAN, networks.c.project_id == project).order_by(*_ORDER)
    ).all()
    if rows:
        return [Network.from_row(r) for r in rows]
    stmt = sa.select(networks).where(_VLAN, networks.c.project_id.is_(None)).order_by(networks.c.id).limit(1)
    row = conn.execute(stmt.with_for_update(skip_locked=True) if ctx.is_postgres else stmt).first()
    if row is None and ctx.is_postgres:
        # Every unowned network locked by others: wait, a unit that rolls back gives it back.
        row = conn.execute(stmt.with_for_update()).first()
    if row is None:
        raise NoMoreNetworks(
            f"no VLAN network left for project {project}: create more with `novanet network create`"
        )
    res = conn.execute(
        networks.update()
        .where(networks.c.id == row.id, networks.c.project_id.is_(None))
        .values(project_id=project, updated_at=utcnow())
    )
    if res.rowcount != 1:
        raise Retry(f"network {row.uuid} was taken by another project meanwhile")
    net = Network.from_row(conn.execute(sa.select(networks).where(networks.c.id == row.id)).one())
    return [net]


def _check_fixed_quota(ctx: Ctx, conn: Connection, project: str, wanted: int) -> None:
    quota = ctx.config.quota_fixed_ips
    if quota < 0:
        return
    lock(ctx, conn, f"quota:fixed:{project}")
    used = conn.execute(_QUOTA_USED, {"project": project}).scalar_one()
    if used + wanted > quota:
        raise QuotaExceeded(
            f"fixed IP quota exceeded: project {project} holds {used} of {quota} and asks for"
            f" {wanted} more; raise quota_fixed_ips or deallocate instances"
        )


@dataclass
class _Slot:
    """One VIF of one member: a network and, once taken, its address."""

    member: _Member
    net: Network
    address: str | None  # requested
    vif_id: int = 0
    vif_uuid: str = ""
    mac: str = ""
    taken: str = ""


def _allocate_addresses(ctx: Ctx, conn: Connection, members: list[_Member]) -> None:
    cfg = ctx.config
    now = utcnow()
    slots = [_Slot(m, net, address) for m in members for net, address in m.nets]
    # Single-host: the first allocation names the network host.
    unnamed = sorted({s.net.id for s in slots if not s.net.multi_host and s.net.host is None})
    if unnamed:
        conn.execute(
            _NAME_HOST, [{"net_id": n, "v_host": cfg.effective_network_host, "v_now": now} for n in unnamed]
        )
    # VIFs with random MACs. A MAC clash (about 1 in 16 million per existing VIF) trips
    # the unique constraint and the whole unit runs again with fresh MACs.
    for s in slots:
        s.vif_uuid, s.mac = str(uuidlib.uuid4()), random_mac()
    if slots:
        ids = conn.execute(
            _INSERT_VIFS,
            [
                {
                    "uuid": s.vif_uuid,
                    "address": s.mac,
                    "network_id": s.net.id,
                    "instance_uuid": s.member.uuid,
                    "created_at": now,
                }
                for s in slots
            ],
        ).scalars()
        for s, vif_id in zip(slots, ids, strict=True):
            s.vif_id = int(vif_id)
    # Requested addresses first, each claimed at once, so no pick takes one of them.
    free: dict[int, list[_Slot]] = defaultdict(list)
    for s in slots:
        if s.member.req.vpn:
            vpn_address = s.net.vpn_private_address
            if vpn_address is None:
                raise InvalidInput(f"network {s.net.uuid} has no VPN address")
            if s.address is not None and s.address != vpn_address:
                raise InvalidInput(f"a VPN instance takes the network's VPN address {vpn_address}")
            fixed_id, s.taken = fixedsvc.take_requested(ctx, conn, s.net, vpn_address, allow_reserved=True)
        elif s.address is not None:
            fixed_id, s.taken = fixedsvc.take_requested(ctx, conn, s.net, s.address)
        else:
            free[s.net.id].append(s)
            continue
        fixedsvc.claim(conn, fixed_id, instance_uuid=s.member.uuid, vif_id=s.vif_id)
    for net_id in sorted(free):
        group = free[net_id]
        taken = fixedsvc.take_free(ctx, conn, group[0].net, [(s.member.uuid, s.vif_id) for s in group])
        for s, address in zip(group, taken, strict=True):
            s.taken = address
    # Multi-host gateways after the instances' own addresses, so a requested address is
    # never taken first; one per (network, host), in one order for every batch.
    gateways: dict[tuple[int, str], str | None] = {}
    for s in slots:
        if s.net.multi_host and not cfg.share_dhcp_address:
            gateways[(s.net.id, s.member.req.host)] = None
    by_id = {s.net.id: s.net for s in slots}
    for net_id, host in sorted(gateways):
        lock(ctx, conn, f"host-address:{net_id}:{host}")
        gateways[(net_id, host)] = fixedsvc.host_address(ctx, conn, by_id[net_id], host, create=True)
    for s in slots:
        gateway = s.net.gateway
        if s.net.multi_host and not cfg.share_dhcp_address:
            gateway = gateways[(s.net.id, s.member.req.host)]
        dhcp = gateway if s.net.manager != "flat" else None
        s.member.views.append(VifView(s.vif_uuid, s.mac, s.net, gateway, dhcp, (FixedAddress(s.taken),)))


_FLOATING_BY_ADDRESS = sa.select(floating_ips).where(floating_ips.c.address == sa.bindparam("address"))
_INSTANCE = sa.select(instances).where(instances.c.uuid == sa.bindparam("uuid"))


def _auto_floating(ctx: Ctx, conn: Connection, m: _Member) -> None:
    """auto_assign_floating_ip: a floating IP from the default pool on the first VIF."""
    if not m.views:
        return
    addr = floatingsvc.allocate_in(ctx, conn, m.req.project_id, None, auto_assigned=True)
    row = conn.execute(_FLOATING_BY_ADDRESS, {"address": addr}).one()
    inst = conn.execute(_INSTANCE, {"uuid": m.uuid}).one()
    floatingsvc.associate_in(ctx, conn, row, inst, None)
    first = m.views[0]
    fixed = (FixedAddress(first.fixed[0].address, (addr,)), *first.fixed[1:])
    m.views[0] = replace(first, fixed=fixed)
