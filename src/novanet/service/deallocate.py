"""Deallocating instances: many in one transaction, with set-based statements.

A single deallocation is a batch of one. The batch is all or nothing: an instance that
is not found refuses the whole batch, which then changes nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import dhcp_releases, fixed_ips, floating_ips, instances, networks, virtual_interfaces
from novanet.domain import names
from novanet.domain.errors import InvalidInput, NotFound
from novanet.service import scope
from novanet.service.allocate import MAX_BATCH
from novanet.service.context import Ctx, record_many, run, utcnow

# Statements of the deallocation path, built once (building them cost more than running
# them on SQLite).
_UUIDS: sa.BindParameter[list[str]] = sa.bindparam("uuids", expanding=True)
_INSTANCES = sa.select(instances.c.uuid, instances.c.host).where(instances.c.uuid.in_(_UUIDS))
_FIXED = (
    sa.select(
        fixed_ips.c.id,
        fixed_ips.c.instance_uuid,
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
    .where(fixed_ips.c.instance_uuid.in_(_UUIDS), fixed_ips.c.allocated.is_(True))
    .order_by(fixed_ips.c.id)
)
_ON_INSTANCES = floating_ips.c.fixed_ip_id.in_(sa.bindparam("ids", expanding=True))
# One statement for both kinds: an auto-assigned floating IP goes back to the pool (its
# project too), one the project reserved stays the project's, disassociated.
_FLOATING = (
    floating_ips.update()
    .where(_ON_INSTANCES)
    .values(
        fixed_ip_id=None,
        host=None,
        project_id=sa.case((floating_ips.c.auto_assigned.is_(True), None), else_=floating_ips.c.project_id),
        auto_assigned=False,
        updated_at=sa.bindparam("now"),
    )
)
_RELEASE = dhcp_releases.insert()
_FREE = (
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
_AWAIT = (
    fixed_ips.update()
    .where(fixed_ips.c.id == sa.bindparam("fid"))
    .values(allocated=False, virtual_interface_id=None, updated_at=sa.bindparam("now"))
)
# The deleted VIFs' networks come back with the delete (both databases support RETURNING).
_DELETE_VIFS = (
    virtual_interfaces.delete()
    .where(virtual_interfaces.c.instance_uuid.in_(_UUIDS))
    .returning(virtual_interfaces.c.instance_uuid, virtual_interfaces.c.network_id)
)
_DELETE_INSTANCES = instances.delete().where(instances.c.uuid.in_(_UUIDS))


def deallocate_many(ctx: Ctx, instance_uuids: Sequence[str]) -> list[dict[str, Any]]:
    """Undo the allocations of several instances in one transaction: floating IPs off
    (auto-assigned ones back to the pool), fixed IPs freed now or after their lease is
    gone, VIFs and instances removed. One result per instance, in order."""
    if len(instance_uuids) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} instances, not {len(instance_uuids)}")
    uuids = [names.instance_uuid(u) for u in instance_uuids]
    twice = [u for u, n in Counter(uuids).items() if n > 1]
    if twice:
        raise InvalidInput(f"instance {twice[0]} appears twice in the batch")
    if not uuids:
        return []
    cfg = ctx.config

    def tx(conn: Connection) -> list[dict[str, Any]]:
        host_of = {r.uuid: r.host for r in conn.execute(_INSTANCES, {"uuids": uuids})}
        for u in uuids:
            if u not in host_of:
                raise NotFound(f"instance {u} not found")
        rows = conn.execute(_FIXED, {"uuids": uuids}).all()
        now = utcnow()
        ids = [r.id for r in rows]
        if ids:
            conn.execute(_FLOATING, {"ids": ids, "now": now})
        freed: dict[str, list[str]] = defaultdict(list)
        waiting: dict[str, list[str]] = defaultdict(list)
        free_now, await_release, releases = [], [], []
        for r in rows:
            dhcp = r.manager != "flat"
            if not dhcp or (cfg.force_dhcp_release and not r.leased):
                free_now.append({"fid": r.id, "now": now})
                freed[r.instance_uuid].append(r.address)
            else:
                await_release.append({"fid": r.id, "now": now})
                waiting[r.instance_uuid].append(r.address)
            if dhcp and cfg.force_dhcp_release and r.mac is not None:
                # Queued even when no lease was reported: a lease the database missed
                # must not keep dnsmasq from offering the address to its next owner.
                releases.append(
                    {
                        "network_id": r.network_id,
                        "host": host_of[r.instance_uuid] if r.multi_host else r.net_host,
                        "address": r.address,
                        "mac": r.mac,
                        "created_at": now,
                    }
                )
        if releases:
            conn.execute(_RELEASE, releases)
        if free_now:
            conn.execute(_FREE, free_now)
        if await_release:
            conn.execute(_AWAIT, await_release)
        vif_nets: dict[str, list[int]] = defaultdict(list)
        for v in conn.execute(_DELETE_VIFS, {"uuids": uuids}):
            vif_nets[v.instance_uuid].append(v.network_id)
        conn.execute(_DELETE_INSTANCES, {"uuids": uuids})
        scopes = scope.batch_scope(conn, [(u, host_of[u], vif_nets[u]) for u in uuids])
        record_many(ctx, conn, "instance", [(u, h, n) for u, (h, n) in zip(uuids, scopes, strict=True)])
        return [{"uuid": u, "freed": freed[u], "awaiting_release": waiting[u]} for u in uuids]

    return run(ctx, tx)
