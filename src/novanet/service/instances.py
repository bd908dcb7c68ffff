"""Instances: allocate networks for an instance, deallocate them, show its network info."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import fixed_ips, floating_ips, instances, virtual_interfaces
from novanet.domain import names
from novanet.domain.errors import NotFound
from novanet.domain.modes import Mode
from novanet.domain.netinfo import FixedAddress, VifView, network_info
from novanet.service import fixed as fixedsvc
from novanet.service.allocate import AllocateRequest, RequestedNetwork, allocate_many
from novanet.service.context import Ctx, run
from novanet.service.deallocate import deallocate_many
from novanet.service.networks import networks_by_ids

__all__ = [
    "AllocateRequest",
    "RequestedNetwork",
    "allocate_for_instance",
    "allocate_many",
    "deallocate_for_instance",
    "deallocate_many",
    "show",
    "vifs",
]


def allocate_for_instance(ctx: Ctx, mode: Mode, req: AllocateRequest) -> list[dict[str, Any]]:
    """Create the instance's VIFs and fixed IPs (and floating IP when auto-assigned) in one
    transaction; returns its network info. A batch of one (see service/allocate.py)."""
    [info] = allocate_many(ctx, mode, [req])
    return info


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


def deallocate_for_instance(ctx: Ctx, instance_uuid: str) -> dict[str, Any]:
    """Undo an allocation: floating IPs off (auto-assigned ones back to the pool), fixed IPs
    freed now or after their lease is gone, VIFs and the instance removed. A batch of one
    (see service/deallocate.py)."""
    [res] = deallocate_many(ctx, [instance_uuid])
    return res


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
