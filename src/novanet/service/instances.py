"""Instances: allocate networks for an instance, deallocate them, show its network info."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import (
    dhcp_releases,
    fixed_ips,
    floating_ips,
    instances,
    networks,
    virtual_interfaces,
)
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
from novanet.service.context import Ctx, Retry, lock, record, run, utcnow
from novanet.service.networks import find_network, networks_by_ids


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


# Statements of the allocation hot path, built once.
_INSTANCE_EXISTS = sa.select(instances.c.uuid).where(instances.c.uuid == sa.bindparam("uuid"))
_INSERT_INSTANCE = instances.insert()
_INSERT_VIF = virtual_interfaces.insert()
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


def allocate_for_instance(ctx: Ctx, mode: Mode, req: AllocateRequest) -> list[dict[str, Any]]:
    """Create the instance's VIFs and fixed IPs (and floating IP when auto-assigned) in one
    transaction; returns its network info."""
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

    def tx(conn: Connection) -> list[dict[str, Any]]:
        if conn.execute(_INSTANCE_EXISTS, {"uuid": uuid}).first():
            raise Conflict(f"instance {uuid} already has networks; deallocate it first")
        conn.execute(
            _INSERT_INSTANCE,
            {
                "uuid": uuid,
                "project_id": req.project_id,
                "host": req.host,
                "hostname": hostname,
                "created_at": utcnow(),
            },
        )
        nets = _networks_for(ctx, conn, mode, req)
        _check_fixed_quota(ctx, conn, req.project_id, len(nets))
        views = [_allocate_on(ctx, conn, net, uuid, req, address) for net, address in nets]
        if ctx.config.auto_assign_floating_ip and views:
            addr = floatingsvc.allocate_in(ctx, conn, req.project_id, None, auto_assigned=True)
            row = conn.execute(sa.select(floating_ips).where(floating_ips.c.address == addr)).one()
            inst = conn.execute(sa.select(instances).where(instances.c.uuid == uuid)).one()
            floatingsvc.associate_in(ctx, conn, row, inst, None)
            first = views[0]
            fixed = (FixedAddress(first.fixed[0].address, (addr,)), *first.fixed[1:])
            views[0] = replace(first, fixed=fixed)
        hosts, scoped = scope.instance_scope(conn, req.host, (n.id for n, _ in nets), uuid)
        record(ctx, conn, "instance", uuid, hosts=hosts, networks=scoped)
        # Built from what was just written: no second read of the same rows.
        return network_info(views)

    return run(ctx, tx)


def _networks_for(
    ctx: Ctx, conn: Connection, mode: Mode, req: AllocateRequest
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
    if mode.vlan:
        nets = _project_networks(ctx, conn, req.project_id)
    else:
        rows = conn.execute(_FLAT_NETWORKS, {"project_id": req.project_id}).all()
        nets = [Network.from_row(r) for r in rows]
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
    used = conn.execute(
        sa.select(sa.func.count())
        .select_from(fixed_ips.join(instances, instances.c.uuid == fixed_ips.c.instance_uuid))
        .where(instances.c.project_id == project, fixed_ips.c.allocated.is_(True))
    ).scalar_one()
    if used + wanted > quota:
        raise QuotaExceeded(
            f"fixed IP quota exceeded: project {project} holds {used} of {quota};"
            " raise quota_fixed_ips or deallocate instances"
        )


def _new_vif(conn: Connection, net: Network, uuid: str) -> tuple[int, str, str]:
    """A VIF with a random MAC. A MAC clash (about 1 in 16 million per existing VIF) trips
    the unique constraint and the whole unit runs again with a fresh MAC."""
    mac = random_mac()
    vif_uuid = str(uuidlib.uuid4())
    vif_id = conn.execute(
        _INSERT_VIF,
        {
            "uuid": vif_uuid,
            "address": mac,
            "network_id": net.id,
            "instance_uuid": uuid,
            "created_at": utcnow(),
        },
    ).inserted_primary_key[0]  # type: ignore[index]
    return int(vif_id), vif_uuid, mac


def _allocate_on(
    ctx: Ctx, conn: Connection, net: Network, uuid: str, req: AllocateRequest, address: str | None
) -> VifView:
    cfg = ctx.config
    if not net.multi_host and net.host is None:
        # Single-host: the first allocation names the network host.
        conn.execute(
            networks.update()
            .where(networks.c.id == net.id, networks.c.host.is_(None))
            .values(host=cfg.effective_network_host, updated_at=utcnow())
        )
    vif_id, vif_uuid, mac = _new_vif(conn, net, uuid)
    if req.vpn:
        if net.vpn_private_address is None:
            raise InvalidInput(f"network {net.uuid} has no VPN address")
        if address is not None and address != net.vpn_private_address:
            raise InvalidInput(f"a VPN instance takes the network's VPN address {net.vpn_private_address}")
        fixed_id, taken = fixedsvc.take_requested(
            ctx, conn, net, net.vpn_private_address, allow_reserved=True
        )
    elif address is not None:
        fixed_id, taken = fixedsvc.take_requested(ctx, conn, net, address)
    else:
        fixed_id, taken = fixedsvc.pick_free(ctx, conn, net)
    fixedsvc.claim(conn, fixed_id, instance_uuid=uuid, vif_id=vif_id)
    gateway = net.gateway
    if net.multi_host and not cfg.share_dhcp_address:
        # After the instance's own address, so a requested address is never taken first.
        lock(ctx, conn, f"host-address:{net.id}:{req.host}")
        gateway = fixedsvc.host_address(ctx, conn, net, req.host, create=True)
    dhcp = gateway if net.manager != "flat" else None
    return VifView(vif_uuid, mac, net, gateway, dhcp, (FixedAddress(taken),))


def _network_info(ctx: Ctx, conn: Connection, uuid: str) -> list[dict[str, Any]]:
    inst = conn.execute(sa.select(instances).where(instances.c.uuid == uuid)).one()
    vifs = conn.execute(
        sa.select(
            virtual_interfaces.c.id.label("vif_id"),
            virtual_interfaces.c.uuid.label("vif_uuid"),
            virtual_interfaces.c.address.label("mac"),
            virtual_interfaces.c.network_id,
        )
        .where(virtual_interfaces.c.instance_uuid == uuid)
        .order_by(virtual_interfaces.c.id)
    ).all()
    nets = networks_by_ids(conn, [v.network_id for v in vifs])
    fixed_rows = conn.execute(
        sa.select(fixed_ips.c.id, fixed_ips.c.address, fixed_ips.c.virtual_interface_id)
        .where(fixed_ips.c.instance_uuid == uuid, fixed_ips.c.allocated.is_(True))
        .order_by(fixed_ips.c.id)
    ).all()
    fixed_ids = [f.id for f in fixed_rows]
    floats: dict[int, list[str]] = {}
    if fixed_ids:
        for fl in conn.execute(
            sa.select(floating_ips.c.fixed_ip_id, floating_ips.c.address)
            .where(floating_ips.c.fixed_ip_id.in_(fixed_ids))
            .order_by(floating_ips.c.id)
        ):
            floats.setdefault(fl.fixed_ip_id, []).append(fl.address)
    views = []
    for v in vifs:
        net = nets[v.network_id]
        vif_id = v.vif_id
        gateway = dhcp = net.gateway
        if net.multi_host and not ctx.config.share_dhcp_address:
            gateway = dhcp = fixedsvc.host_address(ctx, conn, net, inst.host, create=False)
        fixed = tuple(
            FixedAddress(f.address, tuple(floats.get(f.id, ())))
            for f in fixed_rows
            if f.virtual_interface_id == vif_id
        )
        views.append(VifView(v.vif_uuid, v.mac, net, gateway, dhcp if net.manager != "flat" else None, fixed))
    return network_info(views)


def show(ctx: Ctx, instance_uuid: str) -> dict[str, Any]:
    uuid = names.instance_uuid(instance_uuid)

    def tx(conn: Connection) -> dict[str, Any]:
        inst = conn.execute(sa.select(instances).where(instances.c.uuid == uuid)).first()
        if inst is None:
            raise NotFound(f"instance {uuid} not found")
        return {
            "uuid": inst.uuid,
            "project_id": inst.project_id,
            "host": inst.host,
            "hostname": inst.hostname,
            "network_info": _network_info(ctx, conn, uuid),
        }

    return run(ctx, tx, write=False)


# Statements of the deallocation path, built once (building them cost more than running
# them on SQLite).
_D_INSTANCE = sa.select(instances).where(instances.c.uuid == sa.bindparam("uuid"))
_D_FIXED = (
    sa.select(
        fixed_ips.c.id,
        fixed_ips.c.address,
        fixed_ips.c.leased,
        fixed_ips.c.network_id,
        virtual_interfaces.c.address.label("mac"),
        networks.c.manager,
        networks.c.multi_host,
        networks.c.host.label("net_host"),
    )
    .select_from(
        fixed_ips.join(networks, networks.c.id == fixed_ips.c.network_id).outerjoin(
            virtual_interfaces,
            virtual_interfaces.c.id == fixed_ips.c.virtual_interface_id,
        )
    )
    .where(fixed_ips.c.instance_uuid == sa.bindparam("uuid"), fixed_ips.c.allocated.is_(True))
)
_ON_INSTANCE = floating_ips.c.fixed_ip_id.in_(sa.bindparam("ids", expanding=True))
_D_FLOATING_AUTO = (
    floating_ips.update()
    .where(_ON_INSTANCE, floating_ips.c.auto_assigned.is_(True))
    .values(fixed_ip_id=None, host=None, project_id=None, auto_assigned=False, updated_at=sa.bindparam("now"))
)
_D_FLOATING = (
    floating_ips.update()
    .where(_ON_INSTANCE)
    .values(fixed_ip_id=None, host=None, updated_at=sa.bindparam("now"))
)
_D_RELEASE = dhcp_releases.insert()
_D_FREE = (
    fixed_ips.update()
    .where(fixed_ips.c.id == sa.bindparam("fid"))
    .values(
        instance_uuid=None,
        virtual_interface_id=None,
        allocated=False,
        leased=False,
        updated_at=sa.bindparam("now"),
    )
)
_D_AWAIT = (
    fixed_ips.update()
    .where(fixed_ips.c.id == sa.bindparam("fid"))
    .values(allocated=False, virtual_interface_id=None, updated_at=sa.bindparam("now"))
)
_D_VIF_NETS = sa.select(virtual_interfaces.c.network_id).where(
    virtual_interfaces.c.instance_uuid == sa.bindparam("uuid")
)
_D_DELETE_VIFS = virtual_interfaces.delete().where(virtual_interfaces.c.instance_uuid == sa.bindparam("uuid"))
_D_DELETE_INSTANCE = instances.delete().where(instances.c.uuid == sa.bindparam("uuid"))


def deallocate_for_instance(ctx: Ctx, instance_uuid: str) -> dict[str, Any]:
    """Undo an allocation: floating IPs off (auto-assigned ones back to the pool), fixed IPs
    freed now or after their lease is gone, VIFs and the instance removed."""
    uuid = names.instance_uuid(instance_uuid)
    cfg = ctx.config

    def tx(conn: Connection) -> dict[str, Any]:
        inst = conn.execute(_D_INSTANCE, {"uuid": uuid}).first()
        if inst is None:
            raise NotFound(f"instance {uuid} not found")
        rows = conn.execute(_D_FIXED, {"uuid": uuid}).all()
        now = utcnow()
        ids = [r.id for r in rows]
        if ids:
            conn.execute(_D_FLOATING_AUTO, {"ids": ids, "now": now})
            conn.execute(_D_FLOATING, {"ids": ids, "now": now})
        freed, waiting = [], []
        free_now, await_release, releases = [], [], []
        for r in rows:
            dhcp = r.manager != "flat"
            if not dhcp or (cfg.force_dhcp_release and not r.leased):
                free_now.append({"fid": r.id, "now": now})
                freed.append(r.address)
            else:
                await_release.append({"fid": r.id, "now": now})
                waiting.append(r.address)
            if dhcp and cfg.force_dhcp_release and r.mac is not None:
                # Queued even when no lease was reported: a lease the database missed
                # must not keep dnsmasq from offering the address to its next owner.
                releases.append(
                    {
                        "network_id": r.network_id,
                        "host": inst.host if r.multi_host else r.net_host,
                        "address": r.address,
                        "mac": r.mac,
                        "created_at": now,
                    }
                )
        if releases:
            conn.execute(_D_RELEASE, releases)
        if free_now:
            conn.execute(_D_FREE, free_now)
        if await_release:
            conn.execute(_D_AWAIT, await_release)
        vif_nets = list(conn.execute(_D_VIF_NETS, {"uuid": uuid}).scalars())
        conn.execute(_D_DELETE_VIFS, {"uuid": uuid})
        conn.execute(_D_DELETE_INSTANCE, {"uuid": uuid})
        hosts, nets = scope.instance_scope(conn, inst.host, vif_nets, uuid)
        record(ctx, conn, "instance", uuid, hosts=hosts, networks=nets)
        return {"uuid": uuid, "freed": freed, "awaiting_release": waiting}

    return run(ctx, tx)


def vifs(ctx: Ctx, ref: str) -> list[dict[str, Any]]:
    """The network info of the VIFs of an instance, or of one VIF, by UUID."""
    key = names.instance_uuid(ref)

    def tx(conn: Connection) -> list[dict[str, Any]]:
        if conn.execute(sa.select(instances.c.uuid).where(instances.c.uuid == key)).first():
            return _network_info(ctx, conn, key)
        owner = conn.execute(
            sa.select(virtual_interfaces.c.instance_uuid).where(virtual_interfaces.c.uuid == key)
        ).first()
        if owner is None:
            raise NotFound(f"no instance or VIF {key} (see `novanet instance show`)")
        return [v for v in _network_info(ctx, conn, owner.instance_uuid) if v["id"] == key]

    return run(ctx, tx, write=False)
