"""Networks: create (carving), list, show, delete, modify (project and host association)."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import dhcp_releases, fixed_ips, floating_ips, networks, virtual_interfaces
from novanet.domain import ipam, names
from novanet.domain.errors import (
    Conflict,
    InvalidInput,
    NetworkInUse,
    NoMoreNetworks,
    NotFound,
    VlanConflict,
)
from novanet.domain.models import Network
from novanet.domain.modes import Mode
from novanet.service.context import Ctx, lock, record, run, utcnow

Progress = Callable[[int, int], None]

MAX_VLAN = 4094
INSERT_CHUNK = 8192


@dataclass(frozen=True)
class NetworkRequest:
    """What `network create` asks for; None means "the configured default"."""

    label: str
    fixed_range_v4: str
    num_networks: int | None = None
    network_size: int | None = None
    vlan_start: int | None = None
    vpn_start: int | None = None
    bridge: str | None = None
    bridge_interface: str | None = None
    multi_host: bool | None = None
    dns1: str | None = None
    dns2: str | None = None
    gateway: str | None = None
    fixed_cidr: str | None = None
    project_id: str | None = None
    uuid: str | None = None
    priority: int | None = None
    injected: bool | None = None  # None: flat_injected, in Flat mode only


@dataclass(frozen=True)
class _Checked:
    """A request after every check that needs no database."""

    fixed_range: IPv4Network
    num_networks: int
    network_size: int
    gateway: IPv4Address | None
    fixed_cidr: IPv4Network | None
    dns1: str | None
    dns2: str | None
    bridge: str | None
    bridge_interface: str | None
    multi_host: bool
    uuid: str | None


def _check(ctx: Ctx, mode: Mode, req: NetworkRequest) -> _Checked:
    cfg = ctx.config
    names.label(req.label)
    # Values are stored canonical (parsed and printed back), never as typed: a stray
    # newline or space must not reach dnsmasq's files from the database.
    fixed_range = ipam.usable_network(req.fixed_range_v4, "fixed range")
    num = req.num_networks if req.num_networks is not None else cfg.num_networks
    if num < 1:
        raise InvalidInput(f"invalid number of networks {num}: must be at least 1")
    names.bounded(num, "number of networks")
    if req.priority is not None:
        names.bounded(req.priority, "priority")
    if req.network_size is not None:
        size = names.bounded(req.network_size, "network size")
    else:
        size = ipam.default_network_size(fixed_range.num_addresses, num, cfg.network_size)
    ipam.subnet_prefix(size)  # validates the size
    if size * num > fixed_range.num_addresses:
        raise InvalidInput(
            f"{num} networks of {size} addresses do not fit in {fixed_range}"
            f" ({fixed_range.num_addresses} addresses)"
        )
    single_only = {
        "--gateway": req.gateway,
        "--uuid": req.uuid,
    }
    for flag, value in single_only.items():
        if value is not None and num > 1:
            raise InvalidInput(f"{flag} applies to one network; drop it or use --num-networks 1")
    gateway = ipam.parse_address(req.gateway, "gateway") if req.gateway else None
    fixed_cidr = ipam.parse_network(req.fixed_cidr, "fixed cidr") if req.fixed_cidr else None
    if fixed_cidr is not None and not fixed_cidr.subnet_of(fixed_range):
        raise InvalidInput(f"fixed cidr {fixed_cidr} is not inside the range {fixed_range}")
    dns1_raw = req.dns1 if req.dns1 is not None else cfg.flat_network_dns
    dns1 = str(ipam.usable_address(dns1_raw, "dns1")) if dns1_raw and dns1_raw.strip() else None
    dns2 = str(ipam.usable_address(req.dns2, "dns2")) if req.dns2 and req.dns2.strip() else None
    if req.bridge is not None:
        names.interface_name(req.bridge, "bridge")
    if req.bridge_interface is not None:
        names.interface_name(req.bridge_interface, "bridge interface")
    if req.project_id is not None:
        names.project_id(req.project_id)
    if mode.vlan:
        bridge = req.bridge
        if bridge is not None and num > 1:
            raise InvalidInput("--bridge names one bridge; VLAN networks get br<vlan> each")
        bridge_interface = req.bridge_interface or cfg.vlan_interface
        if req.vlan_start is not None and not 1 <= req.vlan_start <= MAX_VLAN:
            raise InvalidInput(f"invalid VLAN id {req.vlan_start}: must be 1-{MAX_VLAN}")
        if req.vpn_start is not None:
            names.port(names.bounded(req.vpn_start, "VPN start port"), "VPN start port")
    else:
        bridge = req.bridge or cfg.flat_network_bridge
        if not bridge:
            raise InvalidInput("flat networks need a bridge: pass --bridge br100 or set flat_network_bridge")
        names.interface_name(bridge, "bridge")
        bridge_interface = req.bridge_interface or cfg.flat_interface
        if req.vlan_start is not None or req.vpn_start is not None:
            raise InvalidInput(f"--vlan and --vpn apply to VLAN mode; the network manager is {mode.name}")
    if bridge_interface is not None:
        names.interface_name(bridge_interface, "bridge interface")
    uuid = names.network_uuid(req.uuid) if req.uuid else None
    multi_host = req.multi_host if req.multi_host is not None else cfg.multi_host
    return _Checked(
        fixed_range,
        num,
        size,
        gateway,
        fixed_cidr,
        dns1,
        dns2,
        bridge,
        bridge_interface,
        multi_host,
        uuid,
    )


def _pick_vlans(conn: Connection, num: int, start: int | None, default_start: int) -> list[int]:
    used = set(conn.execute(sa.select(networks.c.vlan).where(networks.c.vlan.is_not(None))).scalars())
    if start is None:
        # Havana's fix for collisions on a second create: continue after the highest in use.
        start = max(used) + 1 if used else default_start
    vlans = list(range(start, start + num))
    if vlans[-1] > MAX_VLAN or vlans[0] < 1:
        raise InvalidInput(
            f"VLAN ids {vlans[0]}-{vlans[-1]} fall outside 1-{MAX_VLAN}; choose a lower --vlan"
        )
    taken = sorted(used.intersection(vlans))
    if taken:
        raise VlanConflict(f"VLAN {taken[0]} is already used by another network; choose another --vlan")
    return vlans


def _pick_vpn_ports(
    conn: Connection, num: int, start: int | None, default_start: int, address: str
) -> list[int]:
    used = set(
        conn.execute(
            sa.select(networks.c.vpn_public_port).where(
                networks.c.vpn_public_address == address, networks.c.vpn_public_port.is_not(None)
            )
        ).scalars()
    )
    if start is None:
        start = max(used) + 1 if used else default_start
    ports = list(range(start, start + num))
    if ports[-1] > 65535:
        raise InvalidInput(f"VPN ports {ports[0]}-{ports[-1]} exceed 65535; choose a lower --vpn")
    taken = sorted(used.intersection(ports))
    if taken:
        raise Conflict(f"VPN port {taken[0]} on {address} is already used; choose another --vpn")
    return ports


def create_networks(
    ctx: Ctx, mode: Mode, req: NetworkRequest, progress: Progress | None = None
) -> list[Network]:
    """Create ``num_networks`` networks with all their fixed IP rows, in one transaction."""
    checked = _check(ctx, mode, req)

    def tx(conn: Connection) -> list[Network]:
        return _create(ctx, conn, mode, req, checked, progress)

    return run(ctx, tx)


def _create(
    ctx: Ctx,
    conn: Connection,
    mode: Mode,
    req: NetworkRequest,
    c: _Checked,
    progress: Progress | None,
) -> list[Network]:
    cfg = ctx.config
    existing = [IPv4Network(x) for x in conn.execute(sa.select(networks.c.cidr)).scalars()]
    subnets = ipam.carve(c.fixed_range, c.num_networks, c.network_size, existing)
    floating = conn.execute(sa.select(floating_ips.c.address)).scalars()
    ipam.check_floating_overlap(subnets, (IPv4Address(a) for a in floating))
    if c.uuid is not None and conn.execute(sa.select(networks.c.id).where(networks.c.uuid == c.uuid)).first():
        raise Conflict(f"a network with uuid {c.uuid} already exists")
    vlans: list[int | None] = [None] * c.num_networks
    ports: list[int | None] = [None] * c.num_networks
    vpn_address = cfg.effective_vpn_ip if mode.vlan else None
    if mode.vlan:
        vlans = list(_pick_vlans(conn, c.num_networks, req.vlan_start, cfg.vlan_start))
        assert vpn_address is not None
        ports = list(_pick_vpn_ports(conn, c.num_networks, req.vpn_start, cfg.vpn_start, vpn_address))
    plan = ipam.reservation_plan(mode.vlan, cfg.cnt_vpn_clients)
    planned = []
    for i, cidr in enumerate(subnets):
        sub = ipam.plan_subnet(i, cidr, vlan_mode=mode.vlan, gateway=c.gateway)
        reserved = ipam.reserved_offsets(sub, plan, c.fixed_cidr)
        if ipam.allocatable_count(sub, reserved) < 1:
            raise InvalidInput(
                f"network {cidr} would have no address left for instances after the reserved"
                " ones; use a larger --network-size"
            )
        planned.append((sub, reserved))
    total = sum(sub.cidr.num_addresses for sub, _ in planned)
    done = 0
    created: list[Network] = []
    now = utcnow()
    for (sub, reserved), vlan, port in zip(planned, vlans, ports, strict=True):
        label = f"{req.label}_{sub.index}" if c.num_networks > 1 else req.label
        bridge = c.bridge if c.bridge is not None else f"br{vlan}"
        values: dict[str, Any] = {
            "uuid": c.uuid or str(uuidlib.uuid4()),
            "label": label,
            "injected": (cfg.flat_injected and mode.injected_default)
            if req.injected is None
            else req.injected,
            "cidr": str(sub.cidr),
            "multi_host": c.multi_host,
            "netmask": str(sub.netmask),
            "gateway": str(sub.gateway),
            "broadcast": str(sub.broadcast),
            "dns1": c.dns1,
            "dns2": c.dns2,
            "dhcp_start": str(sub.dhcp_start),
            "bridge": bridge,
            "bridge_interface": c.bridge_interface,
            "vlan": vlan,
            "vpn_public_address": vpn_address,
            "vpn_public_port": port,
            "vpn_private_address": str(sub.vpn_private_address) if sub.vpn_private_address else None,
            "project_id": req.project_id,
            "host": None,
            "priority": req.priority,
            "manager": mode.name,
            "created_at": now,
        }
        net_id = conn.execute(networks.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        base = int(sub.cidr.network_address)
        size = sub.cidr.num_addresses
        for lo in range(0, size, INSERT_CHUNK):
            rows = [
                {
                    "address": str(IPv4Address(base + off)),
                    "network_id": net_id,
                    "reserved": off in reserved,
                    "allocated": False,
                    "leased": False,
                    "created_at": now,
                }
                for off in range(lo, min(lo + INSERT_CHUNK, size))
            ]
            conn.execute(fixed_ips.insert(), rows)
            done += len(rows)
            if progress is not None:
                progress(done, total)
        row = conn.execute(sa.select(networks).where(networks.c.id == net_id)).one()
        created.append(Network.from_row(row))
    # a new network has no host and no instance yet: it concerns no agent
    for n in created:
        record(ctx, conn, "network", n.uuid, networks=[n.id])
    return created


def list_networks(ctx: Ctx, project_id: str | None = None, *, unowned: bool = True) -> list[Network]:
    """Every network; with ``project_id``, that project's (and, if ``unowned``, the ones
    open to every project, as the original's project_only="allow_none")."""
    if project_id is not None:
        names.project_id(project_id)

    def tx(conn: Connection) -> list[Network]:
        stmt = sa.select(networks).order_by(networks.c.id)
        if project_id is not None:
            mine = networks.c.project_id == project_id
            stmt = stmt.where(sa.or_(mine, networks.c.project_id.is_(None)) if unowned else mine)
        return [Network.from_row(r) for r in conn.execute(stmt).all()]

    return run(ctx, tx, write=False)


def add_to_project(ctx: Ctx, project: str, ref: str | None = None) -> Network:
    """Give ``project`` a network: the one named, or the first one no project owns."""
    names.project_id(project)
    if ref is not None:
        return modify_network(ctx, ref, project=project)

    def tx(conn: Connection) -> Network:
        lock(ctx, conn, "networks:associate")
        row = conn.execute(
            sa.select(networks.c.uuid, networks.c.id, networks.c.host)
            .where(networks.c.project_id.is_(None))
            .order_by(networks.c.id)
            .limit(1)
        ).first()
        if row is None:
            raise NoMoreNetworks("no network left without a project; create one first")
        conn.execute(
            networks.update()
            .where(networks.c.uuid == row.uuid, networks.c.project_id.is_(None))
            .values(project_id=project, updated_at=utcnow())
        )
        record(ctx, conn, "network", row.uuid, hosts=[row.host], networks=[row.id])
        return find_network(conn, row.uuid)

    return run(ctx, tx)


def find_network(conn: Connection, ref: str, *, for_update: bool = False) -> Network:
    """A network by uuid or by cidr; NotFound otherwise."""
    ref = ref.strip()
    if "/" in ref:
        cidr = ipam.parse_network(ref, "network range")
        cond = networks.c.cidr == str(cidr)
    else:
        cond = networks.c.uuid == names.network_uuid(ref)
    stmt = sa.select(networks).where(cond)
    if for_update:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"network {ref} not found (see `novanet network list`)")
    return Network.from_row(row)


def get_network(ctx: Ctx, ref: str) -> Network:
    return run(ctx, lambda conn: find_network(conn, ref), write=False)


def delete_network(
    ctx: Ctx,
    *,
    fixed_range: str | None = None,
    uuid: str | None = None,
    disassociate: bool = False,
) -> Network:
    """Delete a network that has no project and no allocated addresses.

    ``disassociate``: a network still associated with a project is dropped from it first
    (os-tenant-networks' DELETE did), in the same transaction.
    """
    if (fixed_range is None) == (uuid is None):
        raise InvalidInput("give exactly one of --fixed-range or --uuid")
    ref = fixed_range if fixed_range is not None else uuid
    assert ref is not None

    def tx(conn: Connection) -> Network:
        net = find_network(conn, ref, for_update=True)
        if net.project_id is not None and not disassociate:
            raise NetworkInUse(
                f"network {net.cidr} is associated with project {net.project_id}; run"
                f" `novanet network modify {net.cidr} --disassociate-project` first"
            )
        in_use = conn.execute(
            sa.select(sa.func.count())
            .select_from(fixed_ips)
            .where(
                fixed_ips.c.network_id == net.id,
                sa.or_(fixed_ips.c.instance_uuid.is_not(None), fixed_ips.c.allocated.is_(True)),
            )
        ).scalar_one()
        vifs = conn.execute(
            sa.select(sa.func.count())
            .select_from(virtual_interfaces)
            .where(virtual_interfaces.c.network_id == net.id)
        ).scalar_one()
        if in_use or vifs:
            raise NetworkInUse(
                f"network {net.cidr} still has {max(in_use, vifs)} allocated addresses;"
                " deallocate its instances first"
            )
        conn.execute(dhcp_releases.delete().where(dhcp_releases.c.network_id == net.id))
        conn.execute(fixed_ips.delete().where(fixed_ips.c.network_id == net.id))
        conn.execute(networks.delete().where(networks.c.id == net.id))
        record(ctx, conn, "network", net.uuid, hosts=[net.host], networks=[net.id])
        return net

    return run(ctx, tx)


def modify_network(
    ctx: Ctx,
    ref: str,
    *,
    project: str | None = None,
    host: str | None = None,
    disassociate_project: bool = False,
    disassociate_host: bool = False,
) -> Network:
    """Associate a network with a project or a host, or drop those associations."""
    if project is not None and disassociate_project:
        raise InvalidInput("--project and --disassociate-project contradict each other")
    if host is not None and disassociate_host:
        raise InvalidInput("--host and --disassociate-host contradict each other")
    if project is None and host is None and not disassociate_project and not disassociate_host:
        raise InvalidInput(
            "nothing to change: give --project, --host, --disassociate-project or --disassociate-host"
        )
    if project is not None:
        names.project_id(project)
    if host is not None:
        names.host_name(host)

    def tx(conn: Connection) -> Network:
        net = find_network(conn, ref, for_update=True)
        values: dict[str, Any] = {"updated_at": utcnow()}
        if project is not None:
            if net.project_id not in (None, project):
                raise Conflict(
                    f"network {net.cidr} belongs to project {net.project_id}; run"
                    " --disassociate-project first"
                )
            values["project_id"] = project
        if disassociate_project and net.project_id is not None:
            _refuse_if_project_uses(conn, net)
            values["project_id"] = None
        if host is not None:
            values["host"] = host
        if disassociate_host:
            values["host"] = None
        conn.execute(networks.update().where(networks.c.id == net.id).values(**values))
        # the host it had and the one it gets, and every host carrying it
        record(ctx, conn, "network", net.uuid, hosts=[net.host, values.get("host")], networks=[net.id])
        return find_network(conn, net.uuid)

    return run(ctx, tx)


def _refuse_if_project_uses(conn: Connection, net: Network) -> None:
    used = conn.execute(
        sa.select(sa.func.count())
        .select_from(virtual_interfaces)
        .where(virtual_interfaces.c.network_id == net.id)
    ).scalar_one()
    if used:
        raise NetworkInUse(
            f"network {net.cidr} still has {used} interfaces of project {net.project_id};"
            " deallocate them first"
        )


def networks_by_ids(conn: Connection, ids: Sequence[int]) -> dict[int, Network]:
    if not ids:
        return {}
    rows = conn.execute(sa.select(networks).where(networks.c.id.in_(set(ids)))).all()
    return {r.id: Network.from_row(r) for r in rows}
