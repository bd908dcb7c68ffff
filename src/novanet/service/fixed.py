"""Fixed IPs: picking, the lifecycle flags, lease events, cleanup, reserve, listing."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import dhcp_releases, fixed_ips, instances, networks, virtual_interfaces
from novanet.domain import ipam, names
from novanet.domain.errors import AddressInUse, InvalidInput, NoMoreFixedIps, NotFound
from novanet.domain.mac import normalize_mac
from novanet.domain.models import Network
from novanet.service.context import Ctx, Retry, run, utcnow


def _pick_stmt(postgres: bool, limit: Any = 1) -> sa.Select[Any]:
    # Literal predicates (not bound parameters) so the planner can prove the query
    # matches the partial "free" index.
    reserved = "false" if postgres else "0"
    if postgres:
        # A range on network_id keeps (network_id, id) a real sort key, which only the
        # network indexes provide. With `network_id = n ORDER BY id`, PostgreSQL walks
        # the primary key once the table was analyzed while every row was free, reading
        # every address already taken on each pick (the cost grew with the fill level).
        network: sa.ColumnElement[bool] = fixed_ips.c.network_id.between(
            sa.bindparam("net_id"), sa.bindparam("net_id")
        )
        order: tuple[Any, ...] = (fixed_ips.c.network_id, fixed_ips.c.id)
    else:
        network = fixed_ips.c.network_id == sa.bindparam("net_id")
        order = (fixed_ips.c.id,)
    stmt = (
        sa.select(fixed_ips.c.id, fixed_ips.c.address)
        .where(
            network,
            fixed_ips.c.instance_uuid.is_(None),
            fixed_ips.c.host.is_(None),
            sa.text(f"fixed_ips.reserved = {reserved}"),
        )
        .order_by(*order)
        .limit(limit)
    )
    # PostgreSQL: rows being taken by other transactions are skipped, not waited for.
    return stmt.with_for_update(skip_locked=True) if postgres else stmt


# Built once: statement construction costs more than SQLite's execution here.
_PICK = {False: _pick_stmt(False), True: _pick_stmt(True)}
# PostgreSQL, when every free row is locked by others: wait for them instead of skipping,
# since a unit that rolls back gives its row back (the lock re-checks the row after).
_PICK_WAIT = _pick_stmt(True).with_for_update()


@functools.lru_cache(maxsize=256)
def _pick_n(postgres: bool, n: int) -> sa.Select[Any]:
    """Several free rows at once, built once per count: the count is a literal in the
    statement, so the planner sees as small a LIMIT as the single pick's."""
    return _pick_stmt(postgres, sa.literal_column(str(int(n))))


_CLAIM = (
    fixed_ips.update()
    .where(
        fixed_ips.c.id == sa.bindparam("fixed_id"),
        fixed_ips.c.instance_uuid.is_(None),
        fixed_ips.c.host.is_(None),
    )
    .values(
        instance_uuid=sa.bindparam("v_instance_uuid"),
        host=sa.bindparam("v_host"),
        allocated=sa.bindparam("v_allocated"),
        leased=False,
        virtual_interface_id=sa.bindparam("v_vif_id"),
        updated_at=sa.bindparam("v_now"),
    )
)


def pick_free(ctx: Ctx, conn: Connection, net: Network) -> tuple[int, str]:
    """The first free address of ``net``: one probe of the free-list index."""
    row = conn.execute(_PICK[ctx.is_postgres], {"net_id": net.id}).first()
    if row is None and ctx.is_postgres:
        row = conn.execute(_PICK_WAIT, {"net_id": net.id}).first()
    if row is None:
        raise NoMoreFixedIps(f"no more fixed IPs in network {net.label} ({net.cidr})")
    return int(row.id), str(row.address)


def take_free(ctx: Ctx, conn: Connection, net: Network, owners: list[tuple[str, int]]) -> list[str]:
    """Claim one free address of ``net`` for each (instance uuid, VIF id) in ``owners``,
    in order: probes of the free-list index for all the missing rows at once, claimed
    with one executemany. Returns the addresses."""
    taken: list[str] = []
    while len(taken) < len(owners):
        want = len(owners) - len(taken)
        rows = conn.execute(_pick_n(ctx.is_postgres, want), {"net_id": net.id}).all()
        if not rows and ctx.is_postgres:
            # every free row locked by others: wait for one (see _PICK_WAIT)
            rows = conn.execute(_PICK_WAIT, {"net_id": net.id}).all()
        if not rows:
            raise NoMoreFixedIps(f"no more fixed IPs in network {net.label} ({net.cidr})")
        now = utcnow()
        params = [
            {
                "fixed_id": row.id,
                "v_instance_uuid": uuid,
                "v_host": None,
                "v_allocated": True,
                "v_vif_id": vif_id,
                "v_now": now,
            }
            for row, (uuid, vif_id) in zip(rows, owners[len(taken) :], strict=False)
        ]
        if conn.execute(_CLAIM, params).rowcount != len(params):
            raise Retry(f"a fixed IP row of network {net.label} was taken meanwhile")
        taken += [str(row.address) for row in rows]
    return taken


def claim(
    conn: Connection,
    fixed_id: int,
    *,
    instance_uuid: str | None = None,
    host: str | None = None,
    vif_id: int | None = None,
) -> None:
    """Take a free row for an instance (allocated) or as a host's own address; another
    writer that got there first makes the unit run again."""
    res = conn.execute(
        _CLAIM,
        {
            "fixed_id": fixed_id,
            "v_instance_uuid": instance_uuid,
            "v_host": host,
            "v_allocated": instance_uuid is not None,
            "v_vif_id": vif_id,
            "v_now": utcnow(),
        },
    )
    if res.rowcount != 1:
        raise Retry(f"fixed IP row {fixed_id} was taken meanwhile")


def take_requested(
    ctx: Ctx, conn: Connection, net: Network, address: str, *, allow_reserved: bool = False
) -> tuple[int, str]:
    """The row of a requested address, refused when outside, reserved or taken."""
    addr = ipam.parse_address(address, "fixed address")
    if addr not in IPv4Network(net.cidr):
        raise InvalidInput(f"address {addr} is not in network {net.label} ({net.cidr})")
    stmt = sa.select(fixed_ips).where(fixed_ips.c.address == str(addr))
    if ctx.is_postgres:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"address {addr} has no row in network {net.cidr}")
    if row.instance_uuid is not None:
        raise AddressInUse(f"address {addr} is already in use by instance {row.instance_uuid}")
    if row.host is not None:
        raise AddressInUse(f"address {addr} is the gateway/DHCP address of host {row.host}")
    if row.reserved and not allow_reserved:
        raise AddressInUse(f"address {addr} is reserved; pick another or run `novanet fixed unreserve`")
    return int(row.id), str(row.address)


def host_address(ctx: Ctx, conn: Connection, net: Network, host: str, *, create: bool) -> str | None:
    """A multi-host network's own gateway/DHCP address on ``host``, taken on first use."""
    row = conn.execute(
        sa.select(fixed_ips.c.address).where(fixed_ips.c.network_id == net.id, fixed_ips.c.host == host)
    ).first()
    if row is not None:
        return str(row.address)
    if not create:
        return None
    fixed_id, address = pick_free(ctx, conn, net)
    claim(conn, fixed_id, host=host)
    return address


def disassociate_values() -> dict[str, Any]:
    return {
        "instance_uuid": None,
        "virtual_interface_id": None,
        "allocated": False,
        "leased": False,
        "updated_at": utcnow(),
    }


@dataclass(frozen=True)
class LeaseResult:
    address: str
    action: str  # leased, released, freed, ignored


def _row_with_mac(conn: Connection, address: str) -> Any:
    addr = ipam.parse_address(address, "address")
    row = conn.execute(
        sa.select(fixed_ips, virtual_interfaces.c.address.label("mac"))
        .select_from(
            fixed_ips.outerjoin(
                virtual_interfaces, virtual_interfaces.c.id == fixed_ips.c.virtual_interface_id
            )
        )
        .where(fixed_ips.c.address == str(addr))
    ).first()
    if row is None:
        raise NotFound(f"fixed IP {addr} not found")
    return row


def _mac(value: str) -> str:
    mac = normalize_mac(value)
    if mac is None:
        raise InvalidInput(f"invalid MAC address {value!r}")
    return mac


def _lease_in(conn: Connection, address: str, mac: str) -> LeaseResult:
    row = _row_with_mac(conn, address)
    if row.instance_uuid is None or (row.mac is not None and row.mac != mac):
        return LeaseResult(row.address, "ignored")
    if row.mac is None and not _pending_release(conn, row.address, mac):
        return LeaseResult(row.address, "ignored")
    conn.execute(fixed_ips.update().where(fixed_ips.c.id == row.id).values(leased=True, updated_at=utcnow()))
    return LeaseResult(row.address, "leased")


def lease(ctx: Ctx, address: str, mac: str) -> LeaseResult:
    """The DHCP server reports a lease (dnsmasq `add` or `old`) of ``address`` to ``mac``."""
    mac = _mac(mac)
    return run(ctx, lambda conn: _lease_in(conn, address, mac))


def _pending_release(conn: Connection, address: str, mac: str) -> bool:
    return (
        conn.execute(
            sa.select(dhcp_releases.c.id).where(
                dhcp_releases.c.address == address, dhcp_releases.c.mac == mac
            )
        ).first()
        is not None
    )


def _any_pending(conn: Connection, address: str) -> bool:
    """Whether a release is queued for ``address`` (with the MAC of its last owner)."""
    row = conn.execute(sa.select(dhcp_releases.c.id).where(dhcp_releases.c.address == address).limit(1))
    return row.first() is not None


def _release_in(conn: Connection, address: str, mac: str) -> LeaseResult:
    row = _row_with_mac(conn, address)
    pending = _pending_release(conn, row.address, mac)
    conn.execute(
        dhcp_releases.delete().where(dhcp_releases.c.address == row.address, dhcp_releases.c.mac == mac)
    )
    if row.instance_uuid is None:
        return LeaseResult(row.address, "ignored")
    if row.mac == mac and row.allocated:
        conn.execute(
            fixed_ips.update().where(fixed_ips.c.id == row.id).values(leased=False, updated_at=utcnow())
        )
        return LeaseResult(row.address, "released")
    if not row.allocated and (pending or (row.mac is None and not _any_pending(conn, row.address))):
        conn.execute(fixed_ips.update().where(fixed_ips.c.id == row.id).values(**disassociate_values()))
        return LeaseResult(row.address, "freed")
    return LeaseResult(row.address, "ignored")


def release(ctx: Ctx, address: str, mac: str) -> LeaseResult:
    """The DHCP server reports a lease gone (dnsmasq `del`).

    A deallocated address is freed; an allocated one only loses its leased flag: a
    guest's DHCPRELEASE never frees the address its instance holds.
    """
    mac = _mac(mac)
    return run(ctx, lambda conn: _release_in(conn, address, mac))


LEASE_ACTIONS = ("add", "del")


@dataclass(frozen=True)
class LeaseEvent:
    """One event of a DHCP server: ``add`` (a lease given) or ``del`` (a lease ended)."""

    action: str
    address: str
    mac: str

    @classmethod
    def parse(cls, action: str, mac: str, address: str) -> LeaseEvent:
        """Validated: a value that is not an action, a MAC or an IPv4 address is refused."""
        if action not in LEASE_ACTIONS:
            raise InvalidInput(f"invalid lease action {action!r}: expected add or del")
        return cls(action, str(ipam.parse_address(address, "address")), _mac(mac))


def lease_events(ctx: Ctx, events: list[LeaseEvent]) -> list[LeaseResult]:
    """Apply a DHCP server's events in their order, in one transaction (one commit for a
    burst of leases). An event about an address the database does not know is ignored
    (its result says so); it never fails the others."""

    def tx(conn: Connection) -> list[LeaseResult]:
        out = []
        for ev in events:
            try:
                fn = _release_in if ev.action == "del" else _lease_in
                out.append(fn(conn, ev.address, ev.mac))
            except NotFound:
                out.append(LeaseResult(ev.address, "ignored"))
        return out

    return run(ctx, tx) if events else []


def cleanup(ctx: Ctx, now: dt.datetime | None = None) -> int:
    """Free deallocated addresses older than fixed_ip_disassociate_timeout (periodic task)."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=ctx.config.fixed_ip_disassociate_timeout)

    def tx(conn: Connection) -> int:
        stale = sa.and_(
            fixed_ips.c.allocated.is_(False),
            fixed_ips.c.instance_uuid.is_not(None),
            fixed_ips.c.updated_at < cutoff,
        )
        addrs = list(conn.execute(sa.select(fixed_ips.c.address).where(stale)).scalars())
        if not addrs:
            return 0
        conn.execute(fixed_ips.update().where(stale).values(**disassociate_values()))
        conn.execute(dhcp_releases.delete().where(dhcp_releases.c.created_at < cutoff))
        return len(addrs)

    return run(ctx, tx)


def set_reserved(ctx: Ctx, address: str, reserved: bool) -> dict[str, Any]:
    """`fixed reserve` / `fixed unreserve`; idempotent."""
    addr = ipam.parse_address(address, "address")

    def tx(conn: Connection) -> dict[str, Any]:
        row = conn.execute(
            sa.select(fixed_ips, networks.c.cidr, networks.c.gateway)
            .join(networks, networks.c.id == fixed_ips.c.network_id)
            .where(fixed_ips.c.address == str(addr))
        ).first()
        if row is None:
            raise NotFound(f"fixed IP {addr} not found in any network")
        if reserved and row.instance_uuid is not None:
            raise AddressInUse(f"address {addr} is in use by instance {row.instance_uuid}; cannot reserve it")
        if reserved and row.host is not None:
            raise AddressInUse(f"address {addr} is the gateway/DHCP address of host {row.host}")
        if not reserved:
            structural = ipam.structural_addresses(
                IPv4Network(row.cidr), IPv4Address(row.gateway) if row.gateway else None
            )
            if addr in structural:
                raise InvalidInput(
                    f"address {addr} is the network, broadcast or gateway address of {row.cidr}"
                    " and stays reserved"
                )
        conn.execute(
            fixed_ips.update().where(fixed_ips.c.id == row.id).values(reserved=reserved, updated_at=utcnow())
        )
        return {"address": str(addr), "reserved": reserved}

    return run(ctx, tx)


def get(ctx: Ctx, address: str) -> dict[str, Any]:
    """One fixed IP with its network's range and, when allocated, its instance's host and
    hostname (os-fixed-ips show)."""
    addr = ipam.parse_address(address, "fixed IP")

    def tx(conn: Connection) -> dict[str, Any]:
        row = conn.execute(
            sa.select(
                fixed_ips.c.address,
                networks.c.cidr,
                fixed_ips.c.instance_uuid,
                fixed_ips.c.reserved,
                fixed_ips.c.allocated,
                fixed_ips.c.leased,
                instances.c.hostname,
                instances.c.host,
                instances.c.project_id,
            )
            .select_from(
                fixed_ips.join(networks, networks.c.id == fixed_ips.c.network_id).outerjoin(
                    instances, instances.c.uuid == fixed_ips.c.instance_uuid
                )
            )
            .where(fixed_ips.c.address == str(addr))
        ).first()
        if row is None:
            raise NotFound(f"fixed IP {addr} not found in any network")
        return dict(row._mapping)

    return run(ctx, tx, write=False)


def list_fixed(ctx: Ctx, host: str | None = None) -> list[dict[str, Any]]:
    """Every address of every network with its flags (`fixed list`)."""
    if host is not None:
        names.host_name(host)

    def tx(conn: Connection) -> list[dict[str, Any]]:
        stmt = (
            sa.select(
                networks.c.cidr.label("network"),
                fixed_ips.c.address,
                fixed_ips.c.instance_uuid,
                instances.c.hostname,
                sa.func.coalesce(fixed_ips.c.host, instances.c.host).label("host"),
                fixed_ips.c.allocated,
                fixed_ips.c.leased,
                fixed_ips.c.reserved,
            )
            .select_from(
                fixed_ips.join(networks, networks.c.id == fixed_ips.c.network_id).outerjoin(
                    instances, instances.c.uuid == fixed_ips.c.instance_uuid
                )
            )
            .order_by(fixed_ips.c.network_id, fixed_ips.c.id)
        )
        if host is not None:
            stmt = stmt.where(sa.or_(fixed_ips.c.host == host, instances.c.host == host))
        return [dict(r._mapping) for r in conn.execute(stmt)]

    return run(ctx, tx, write=False)
