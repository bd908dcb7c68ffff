"""Cloudpipe VPN bookkeeping: each VLAN network's public address and port."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import networks
from novanet.domain import ipam, names
from novanet.domain.errors import Conflict, NotFound
from novanet.domain.models import Network
from novanet.domain.modes import VLAN
from novanet.service.context import Ctx, record, run, utcnow


def change(ctx: Ctx, project: str, ip: str, port: int) -> list[Network]:
    """`vpn change`: point the project's VPN at ``ip``:``port`` (DNATed to vpn_private:1194)."""
    names.project_id(project)
    address = str(ipam.parse_address(ip, "VPN public address"))
    names.port(port, "VPN port")

    def tx(conn: Connection) -> list[Network]:
        rows = conn.execute(
            sa.select(networks)
            .where(networks.c.project_id == project, networks.c.manager == VLAN.name)
            .order_by(networks.c.id)
        ).all()
        if not rows:
            raise NotFound(f"project {project} has no VLAN network (it gets one on its first instance)")
        if len(rows) > 1:
            raise Conflict(
                f"project {project} has {len(rows)} VLAN networks; one address and port cannot serve them all"
            )
        net = rows[0]
        clash = conn.execute(
            sa.select(networks.c.cidr).where(
                networks.c.vpn_public_address == address,
                networks.c.vpn_public_port == port,
                networks.c.id != net.id,
            )
        ).first()
        if clash is not None:
            raise Conflict(f"{address}:{port} is already the VPN endpoint of network {clash.cidr}")
        conn.execute(
            networks.update()
            .where(networks.c.id == net.id)
            .values(vpn_public_address=address, vpn_public_port=port, updated_at=utcnow())
        )
        record(ctx, conn, "network", net.uuid, hosts=[net.host], networks=[net.id])
        return [Network.from_row(conn.execute(sa.select(networks).where(networks.c.id == net.id)).one())]

    return run(ctx, tx)
