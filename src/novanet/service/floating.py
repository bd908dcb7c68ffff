"""Floating IPs: pools, allocation to projects, association with instances' fixed IPs."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import fixed_ips, floating_ips, instances, networks
from novanet.domain import ipam, names
from novanet.domain.errors import (
    CidrConflict,
    Conflict,
    Forbidden,
    InvalidInput,
    NoMoreFloatingIps,
    NotFound,
    QuotaExceeded,
)
from novanet.domain.models import Network
from novanet.service.context import Ctx, Retry, lock, record, run, utcnow

Progress = Callable[[int, int], None]
CHUNK = 8192


def create_pool(
    ctx: Ctx,
    ip_range: str,
    pool: str | None = None,
    interface: str | None = None,
    progress: Progress | None = None,
) -> int:
    """`floating create`: add an address or the host addresses of a CIDR to a pool."""
    addrs = ipam.parse_address_range(ip_range)
    pool = names.pool_name(pool or ctx.config.default_floating_pool)
    interface = names.interface_name(interface or ctx.config.public_interface, "interface")
    lo, hi = int(addrs[0]), int(addrs[-1])

    def tx(conn: Connection) -> int:
        for cidr in conn.execute(sa.select(networks.c.cidr)).scalars():
            net = IPv4Network(cidr)
            if int(net.network_address) <= hi and int(net.broadcast_address) >= lo:
                raise CidrConflict(f"range {ip_range} overlaps fixed network {cidr}; pick another range")
        texts = [str(a) for a in addrs]
        for i in range(0, len(texts), CHUNK):
            clash = conn.execute(
                sa.select(floating_ips.c.address)
                .where(floating_ips.c.address.in_(texts[i : i + CHUNK]))
                .limit(1)
            ).first()
            if clash is not None:
                raise Conflict(f"floating IP {clash.address} already exists; pick another range")
        now = utcnow()
        for i in range(0, len(texts), CHUNK):
            conn.execute(
                floating_ips.insert(),
                [
                    {
                        "address": a,
                        "pool": pool,
                        "interface": interface,
                        "auto_assigned": False,
                        "created_at": now,
                    }
                    for a in texts[i : i + CHUNK]
                ],
            )
            if progress is not None:
                progress(min(i + CHUNK, len(texts)), len(texts))
        return len(texts)

    return run(ctx, tx)


def _in_range(conn: Connection, ip_range: str) -> list[Any]:
    addrs = ipam.parse_address_range(ip_range)
    lo, hi = int(addrs[0]), int(addrs[-1])
    wanted = {str(a) for a in addrs}
    rows = conn.execute(sa.select(floating_ips).order_by(floating_ips.c.id)).all()
    return [r for r in rows if r.address in wanted and lo <= int(IPv4Address(r.address)) <= hi]


def delete_pool(ctx: Ctx, ip_range: str) -> int:
    """`floating delete`: remove the range; refused while any address is held by a project."""

    def tx(conn: Connection) -> int:
        rows = _in_range(conn, ip_range)
        if not rows:
            raise NotFound(f"no floating IPs in range {ip_range} (see `novanet floating list`)")
        for r in rows:
            if r.project_id is not None:
                raise Conflict(
                    f"floating IP {r.address} is allocated to project {r.project_id};"
                    " release it first (`novanet floating release`)"
                )
        ids = [r.id for r in rows]
        for i in range(0, len(ids), CHUNK):
            conn.execute(floating_ips.delete().where(floating_ips.c.id.in_(ids[i : i + CHUNK])))
        return len(ids)

    return run(ctx, tx)


def _listing() -> sa.Select[Any]:
    return sa.select(
        floating_ips.c.id,
        floating_ips.c.address,
        floating_ips.c.pool,
        floating_ips.c.interface,
        floating_ips.c.project_id,
        fixed_ips.c.instance_uuid,
        fixed_ips.c.address.label("fixed_address"),
        floating_ips.c.host,
        floating_ips.c.auto_assigned,
    ).select_from(floating_ips.outerjoin(fixed_ips, fixed_ips.c.id == floating_ips.c.fixed_ip_id))


def list_floating(ctx: Ctx, host: str | None = None, project_id: str | None = None) -> list[dict[str, Any]]:
    if host is not None:
        names.host_name(host)
    if project_id is not None:
        names.project_id(project_id)

    def tx(conn: Connection) -> list[dict[str, Any]]:
        stmt = _listing().order_by(floating_ips.c.id)
        if host is not None:
            stmt = stmt.where(floating_ips.c.host == host)
        if project_id is not None:
            stmt = stmt.where(floating_ips.c.project_id == project_id)
        return [dict(r._mapping) for r in conn.execute(stmt)]

    return run(ctx, tx, write=False)


def pools(ctx: Ctx) -> list[str]:
    def tx(conn: Connection) -> list[str]:
        stmt = sa.select(floating_ips.c.pool).distinct().order_by(floating_ips.c.pool)
        return list(conn.execute(stmt).scalars())

    return run(ctx, tx, write=False)


def allocate_in(
    ctx: Ctx, conn: Connection, project_id: str, pool: str | None, *, auto_assigned: bool = False
) -> str:
    """Take the first free address of ``pool`` for ``project_id`` inside a unit of work."""
    names.project_id(project_id)
    pool = names.pool_name(pool or ctx.config.default_floating_pool)
    quota = ctx.config.quota_floating_ips
    if not auto_assigned and quota >= 0:
        lock(ctx, conn, f"quota:floating:{project_id}")
        used = conn.execute(
            sa.select(sa.func.count())
            .select_from(floating_ips)
            .where(floating_ips.c.project_id == project_id, floating_ips.c.auto_assigned.is_(False))
        ).scalar_one()
        if used >= quota:
            raise QuotaExceeded(
                f"floating IP quota exceeded: project {project_id} holds {used} of {quota};"
                " release one or raise quota_floating_ips"
            )
    # As for fixed IPs (fixed.pick_free): a range on pool keeps (pool, id) a real sort key,
    # so PostgreSQL takes the partial free-list index instead of walking the primary key.
    in_pool = floating_ips.c.pool.between(pool, pool) if ctx.is_postgres else floating_ips.c.pool == pool
    stmt = (
        sa.select(floating_ips.c.id, floating_ips.c.address)
        .where(in_pool, floating_ips.c.project_id.is_(None))
        .order_by(floating_ips.c.pool, floating_ips.c.id)
        .limit(1)
    )
    row = conn.execute(stmt.with_for_update(skip_locked=True) if ctx.is_postgres else stmt).first()
    if row is None and ctx.is_postgres:
        # Every free row locked by others: wait, a unit that rolls back gives its row back.
        row = conn.execute(stmt.with_for_update()).first()
    if row is None:
        exists = conn.execute(
            sa.select(floating_ips.c.id).where(floating_ips.c.pool == pool).limit(1)
        ).first()
        if exists is None:
            raise NotFound(f"floating IP pool {pool} not found (see `novanet floating list`)")
        raise NoMoreFloatingIps(f"no more floating IPs in pool {pool}")
    res = conn.execute(
        floating_ips.update()
        .where(floating_ips.c.id == row.id, floating_ips.c.project_id.is_(None))
        .values(project_id=project_id, auto_assigned=auto_assigned, updated_at=utcnow())
    )
    if res.rowcount != 1:
        raise Retry(f"floating IP {row.address} was taken meanwhile")
    return str(row.address)


def allocate(ctx: Ctx, project_id: str, pool: str | None = None) -> dict[str, Any]:
    """`floating allocate`: reserve an address of the pool for a project."""

    def tx(conn: Connection) -> dict[str, Any]:
        address = allocate_in(ctx, conn, project_id, pool)
        return _one(conn, address)

    return run(ctx, tx)


def _one(conn: Connection, address: str) -> dict[str, Any]:
    row = conn.execute(_listing().where(floating_ips.c.address == address)).one()
    return dict(row._mapping)


def _find(conn: Connection, ctx: Ctx, address: str) -> Any:
    addr = ipam.parse_address(address, "floating IP")
    stmt = sa.select(floating_ips).where(floating_ips.c.address == str(addr))
    if ctx.is_postgres:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"floating IP {addr} not found (see `novanet floating list`)")
    return row


def get(ctx: Ctx, ref: str | int, project_id: str | None = None) -> dict[str, Any]:
    """One floating IP by its id or its address; another project's is not found (the
    original's project_only), as is a free one when ``project_id`` is given."""
    if project_id is not None:
        names.project_id(project_id)
    text = str(ref).strip()
    if text.isascii() and text.isdigit():
        if int(text) >= 2**31:
            raise NotFound(f"floating IP {text} not found")
        cond = floating_ips.c.id == int(text)
    else:
        cond = floating_ips.c.address == str(ipam.parse_address(text, "floating IP"))

    def tx(conn: Connection) -> dict[str, Any]:
        row = conn.execute(_listing().where(cond)).first()
        if row is None or (project_id is not None and row.project_id != project_id):
            raise NotFound(f"floating IP {text} not found")
        return dict(row._mapping)

    return run(ctx, tx, write=False)


def release(
    ctx: Ctx, address: str, project_id: str | None = None, *, disassociate: bool = False
) -> dict[str, Any]:
    """Return an address to its pool: by its owner (``project_id``) or the admin (None).

    ``disassociate``: detach it from its instance first, in the same transaction (the
    Compute API's DELETE did), instead of refusing an associated address.
    """
    if project_id is not None:
        names.project_id(project_id)

    def tx(conn: Connection) -> dict[str, Any]:
        row = _find(conn, ctx, address)
        if disassociate and row.fixed_ip_id is not None and not row.auto_assigned:
            if project_id is not None and row.project_id != project_id:
                raise Forbidden(f"floating IP {row.address} belongs to another project")
            conn.execute(
                floating_ips.update()
                .where(floating_ips.c.id == row.id)
                .values(fixed_ip_id=None, host=None, updated_at=utcnow())
            )
            record(ctx, conn, "floating", row.address, hosts=[row.host])
            row = _find(conn, ctx, address)
        if row.project_id is None:
            raise Conflict(f"floating IP {row.address} is not allocated to any project")
        if project_id is not None and row.project_id != project_id:
            raise Forbidden(f"floating IP {row.address} belongs to another project")
        if row.auto_assigned:
            raise Forbidden(f"floating IP {row.address} was auto-assigned; it is released with its instance")
        if row.fixed_ip_id is not None:
            raise Conflict(
                f"floating IP {row.address} is associated; run `novanet floating disassociate"
                f" {row.address}` first"
            )
        info = _one(conn, row.address)
        conn.execute(
            floating_ips.update()
            .where(floating_ips.c.id == row.id)
            .values(project_id=None, host=None, auto_assigned=False, updated_at=utcnow())
        )
        return info

    return run(ctx, tx)


def nat_host(net: Network, instance_host: str) -> str | None:
    """Which host does the NAT of a floating IP: the instance's in multi-host, else the
    network's host."""
    return instance_host if net.multi_host else net.host


def associate_in(
    ctx: Ctx, conn: Connection, row: Any, instance: Any, fixed_address: str | None
) -> dict[str, Any]:
    stmt = (
        sa.select(fixed_ips, networks)
        .join(networks, networks.c.id == fixed_ips.c.network_id)
        .where(fixed_ips.c.instance_uuid == instance.uuid, fixed_ips.c.allocated.is_(True))
        .order_by(fixed_ips.c.id)
    )
    fixed = conn.execute(stmt).all()
    if not fixed:
        raise Conflict(f"instance {instance.uuid} has no fixed IP to associate with")
    if fixed_address is not None:
        wanted = str(ipam.parse_address(fixed_address, "fixed address"))
        match = [f for f in fixed if f.address == wanted]
        if not match:
            raise InvalidInput(f"address {wanted} is not a fixed IP of instance {instance.uuid}")
        target = match[0]
    else:
        target = fixed[0]
    net = Network.from_row(conn.execute(sa.select(networks).where(networks.c.id == target.network_id)).one())
    new_host = nat_host(net, instance.host)
    conn.execute(
        floating_ips.update()
        .where(floating_ips.c.id == row.id)
        .values(fixed_ip_id=target.id, host=new_host, updated_at=utcnow())
    )
    # the host that NATed it before (a move) and the one that NATs it now
    record(ctx, conn, "floating", row.address, hosts=[row.host, new_host])
    return _one(conn, row.address)


def _instance(conn: Connection, uuid: str) -> Any:
    row = conn.execute(sa.select(instances).where(instances.c.uuid == names.instance_uuid(uuid))).first()
    if row is None:
        raise NotFound(f"instance {uuid} not found (see `novanet instance show`)")
    return row


def associate(
    ctx: Ctx,
    address: str,
    instance_uuid: str,
    fixed_address: str | None = None,
    project_id: str | None = None,
) -> dict[str, Any]:
    """Point a project's floating IP at an instance of the same project; moves it if needed."""
    names.instance_uuid(instance_uuid)

    def tx(conn: Connection) -> dict[str, Any]:
        row = _find(conn, ctx, address)
        inst = _instance(conn, instance_uuid)
        if row.project_id is None:
            raise Conflict(
                f"floating IP {row.address} is not allocated to a project; run"
                f" `novanet floating allocate --project-id {inst.project_id}` first"
            )
        if project_id is not None and row.project_id != project_id:
            raise Forbidden(f"floating IP {row.address} belongs to another project")
        if row.project_id != inst.project_id:
            raise Forbidden(
                f"floating IP {row.address} belongs to project {row.project_id}, instance"
                f" {inst.uuid} to project {inst.project_id}"
            )
        return associate_in(ctx, conn, row, inst, fixed_address)

    return run(ctx, tx)


def disassociate(ctx: Ctx, address: str, project_id: str | None = None) -> dict[str, Any]:
    def tx(conn: Connection) -> dict[str, Any]:
        row = _find(conn, ctx, address)
        if project_id is not None and row.project_id != project_id:
            raise Forbidden(f"floating IP {row.address} belongs to another project")
        if row.fixed_ip_id is None:
            raise Conflict(f"floating IP {row.address} is not associated with any instance")
        if row.auto_assigned:
            raise Forbidden(f"floating IP {row.address} was auto-assigned; it goes with its instance")
        info = _one(conn, row.address)
        conn.execute(
            floating_ips.update()
            .where(floating_ips.c.id == row.id)
            .values(fixed_ip_id=None, host=None, updated_at=utcnow())
        )
        record(ctx, conn, "floating", row.address, hosts=[row.host])
        return info

    return run(ctx, tx)
