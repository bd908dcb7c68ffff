"""Cloudpipe VPN use cases: create a project's VPN, list VPNs with a probed state,
issue a user's client config, revoke it, build the boot bundle; and `vpn change`.

Certificates and keys are files under ca_path/keys_path (novanet.vpn.certs); the
database keeps which VPNs are wanted and the serials of the certificates issued, so the
CRL can be signed again and `vpn list` can tell a revoked server.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from novanet.db.schema import fixed_ips, networks, vpn_certs, vpns
from novanet.domain import ipam, names
from novanet.domain.errors import Conflict, InvalidInput, NotFound
from novanet.domain.models import Network
from novanet.domain.modes import VLAN
from novanet.service.context import Ctx, record, run, utcnow

if TYPE_CHECKING:
    from cryptography import x509

    from novanet.vpn.certs import Paths
    from novanet.vpn.render import ServerSpec

# The os-cloudpipe answer names an instance; novanet's VPN is an appliance of the agent,
# named by a stable id derived from the project.
_APPLIANCE_NS = uuidlib.UUID("6c1f0c0e-4a57-4a1b-9f7e-0b5f3e6a7c01")


def appliance_id(project: str) -> str:
    return str(uuidlib.uuid5(_APPLIANCE_NS, project))


def _require_vlan(ctx: Ctx) -> None:
    if not ctx.config.network_manager.vlan:
        raise InvalidInput(
            "the cloudpipe VPN needs the VLAN manager; the network manager is "
            + ctx.config.network_manager.name
        )


def _vlan_network(conn: Connection, project: str) -> Row[Any]:
    rows = conn.execute(
        sa.select(networks)
        .where(networks.c.project_id == project, networks.c.manager == VLAN.name)
        .order_by(networks.c.id)
    ).all()
    if not rows:
        raise NotFound(f"project {project} has no VLAN network (it gets one on its first instance)")
    if len(rows) > 1:
        raise Conflict(f"project {project} has {len(rows)} VLAN networks; one VPN cannot serve them all")
    return rows[0]


def client_range(conn: Connection, net: Network) -> tuple[str, str] | None:
    """The clients' addresses of ``net``: the reserved ones right below its broadcast."""
    cidr = IPv4Network(net.cidr)
    low = int(cidr.broadcast_address) - 1 - 4096
    rows = conn.execute(
        sa.select(fixed_ips.c.address).where(
            fixed_ips.c.network_id == net.id,
            fixed_ips.c.reserved.is_(True),
        )
    ).scalars()
    held = [a for a in (IPv4Address(r) for r in rows) if int(a) >= low]
    found = ipam.vpn_client_range(cidr, held)
    return (str(found[0]), str(found[1])) if found else None


def server_spec(net: Network, pool: tuple[str, str]) -> ServerSpec:
    from novanet.vpn.render import ServerSpec

    if net.project_id is None or net.vpn_private_address is None or net.gateway is None:
        raise InvalidInput(f"network {net.cidr} has no project, VPN address or gateway")
    return ServerSpec(
        project=net.project_id,
        cidr=net.cidr,
        vpn_address=net.vpn_private_address,
        gateway=net.gateway,
        pool_start=pool[0],
        pool_end=pool[1],
    )


def _paths(ctx: Ctx, project: str) -> Paths:
    from novanet.vpn import certs

    return certs.paths(ctx.config, project)


def _ca_name(ctx: Ctx, project: str) -> str:
    from novanet.vpn import certs

    return certs.ca_common_name(ctx.config, project)


def _record_cert(conn: Connection, ctx: Ctx, project: str, user: str | None, cert: x509.Certificate) -> None:
    conn.execute(
        vpn_certs.insert().values(
            serial=format(cert.serial_number, "x"),
            project_id=project,
            user_name=user,
            ca=_ca_name(ctx, project),
            not_after=cert.not_valid_after_utc.replace(tzinfo=None),
            created_at=utcnow(),
        )
    )


def _revoked(conn: Connection, ca: str) -> list[tuple[int, dt.datetime]]:
    rows = conn.execute(
        sa.select(vpn_certs.c.serial, vpn_certs.c.revoked_at).where(
            vpn_certs.c.ca == ca, vpn_certs.c.revoked_at.is_not(None)
        )
    ).all()
    return [(int(r.serial, 16), r.revoked_at) for r in rows]


def _pick_port(conn: Connection, address: str, start: int) -> int:
    used = set(
        conn.execute(
            sa.select(networks.c.vpn_public_port).where(
                networks.c.vpn_public_address == address, networks.c.vpn_public_port.is_not(None)
            )
        ).scalars()
    )
    port = max(used) + 1 if used else start
    if port > 65535:
        raise Conflict(f"no VPN port left on {address}; free one with `novanet vpn change`")
    return port


def create(ctx: Ctx, project: str) -> dict[str, Any]:
    """`vpn create`: the CA material and the server certificate of ``project``'s VPN,
    its public address and port if it had none, and the VPN marked wanted."""
    from novanet.vpn import certs

    names.project_id(project)
    certs.safe_name(project, "project id")
    _require_vlan(ctx)

    def check(conn: Connection) -> Network:
        net = Network.from_row(_vlan_network(conn, project))
        if client_range(conn, net) is None:
            raise InvalidInput(
                f"network {net.cidr} reserves no VPN client addresses (it was made with"
                " cnt_vpn_clients = 0); recreate it with cnt_vpn_clients set"
            )
        if net.vpn_private_address is None:
            raise InvalidInput(f"network {net.cidr} has no VPN address")
        holder = conn.execute(
            sa.select(fixed_ips.c.instance_uuid).where(
                fixed_ips.c.address == net.vpn_private_address, fixed_ips.c.instance_uuid.is_not(None)
            )
        ).first()
        if holder is not None:
            raise Conflict(
                f"the VPN address {net.vpn_private_address} is held by instance {holder.instance_uuid}"
                " (a cloudpipe instance allocated with --vpn); deallocate it first"
            )
        return net

    run(ctx, check, write=False)
    p = _paths(ctx, project)
    certs.ensure_ca(ctx.config, p, project)
    server = None
    if p.server_cert.exists() and p.server_key.exists():
        current = certs.load_cert(p.server_cert)
        if certs.is_valid(current):
            server = current
    fresh = server is None
    if server is None:
        server = certs.issue_server(ctx.config, p, project)

    def tx(conn: Connection) -> dict[str, Any]:
        net = Network.from_row(_vlan_network(conn, project))
        values: dict[str, Any] = {}
        if net.vpn_public_address is None:
            values["vpn_public_address"] = ctx.config.effective_vpn_ip
        if net.vpn_public_port is None:
            address = str(values.get("vpn_public_address", net.vpn_public_address))
            values["vpn_public_port"] = _pick_port(conn, address, ctx.config.vpn_start)
        if values:
            conn.execute(
                networks.update().where(networks.c.id == net.id).values(updated_at=utcnow(), **values)
            )
        known = conn.execute(
            sa.select(vpn_certs.c.id).where(vpn_certs.c.serial == format(server.serial_number, "x"))
        ).first()
        if fresh or known is None:
            _record_cert(conn, ctx, project, None, server)
        if conn.execute(sa.select(vpns.c.project_id).where(vpns.c.project_id == project)).first() is None:
            conn.execute(vpns.insert().values(project_id=project, created_at=utcnow()))
        else:
            conn.execute(vpns.update().where(vpns.c.project_id == project).values(updated_at=utcnow()))
        record(ctx, conn, "network", net.uuid)
        row = conn.execute(sa.select(networks).where(networks.c.id == net.id)).one()
        return _view(Network.from_row(row), "pending", utcnow())

    return run(ctx, tx)


def _view(net: Network, state: str, created: dt.datetime | None) -> dict[str, Any]:
    project = net.project_id or ""
    return {
        "project_id": project,
        "instance_id": appliance_id(project),
        "internal_ip": net.vpn_private_address,
        "public_ip": net.vpn_public_address,
        "public_port": net.vpn_public_port,
        "state": state,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else None,
        "network": net.cidr,
        "host": net.host,
    }


def server_state(ctx: Ctx, net: Network, revoked: set[str], *, probe: bool = True) -> str:
    """pending (no certificate or no host yet), invalid (expired or revoked), running
    (answers an OpenVPN handshake on its public address) or down."""
    from novanet.vpn import certs

    if net.project_id is None:
        return "pending"
    p = _paths(ctx, net.project_id)
    if not p.server_cert.exists():
        return "pending"
    cert = certs.load_cert(p.server_cert)
    if not certs.is_valid(cert) or format(cert.serial_number, "x") in revoked:
        return "invalid"
    # A multi-host network never has a host: the host whose vpn_ip is its public address serves it.
    if (
        (net.host is None and not net.multi_host)
        or net.vpn_public_address is None
        or net.vpn_public_port is None
    ):
        return "pending"
    if not probe:
        return "unknown"
    from novanet.vpn.probe import probe as answer

    return "running" if answer(net.vpn_public_address, net.vpn_public_port) else "down"


def list_vpns(ctx: Ctx, *, probe: bool = True) -> list[dict[str, Any]]:
    """Every wanted VPN, with its endpoint and its state (probed for real)."""

    def tx(conn: Connection) -> list[tuple[Network, dt.datetime, set[str]]]:
        out = []
        for v in conn.execute(sa.select(vpns).order_by(vpns.c.project_id)).all():
            try:
                net = Network.from_row(_vlan_network(conn, v.project_id))
            except (NotFound, Conflict):
                continue
            revoked = set(
                conn.execute(
                    sa.select(vpn_certs.c.serial).where(
                        vpn_certs.c.project_id == v.project_id, vpn_certs.c.revoked_at.is_not(None)
                    )
                ).scalars()
            )
            out.append((net, v.created_at, revoked))
        return out

    return [
        _view(net, server_state(ctx, net, rev, probe=probe), created)
        for net, created, rev in run(ctx, tx, write=False)
    ]


def _wanted_network(conn: Connection, project: str) -> Network:
    net = Network.from_row(_vlan_network(conn, project))
    if conn.execute(sa.select(vpns.c.project_id).where(vpns.c.project_id == project)).first() is None:
        raise NotFound(f"project {project} has no VPN; run `novanet vpn create --project {project}` first")
    if net.vpn_public_address is None or net.vpn_public_port is None:
        raise NotFound(f"the VPN of project {project} has no public address and port")
    return net


def client_config(ctx: Ctx, project: str, user: str) -> str:
    """`vpn client-config`: a ready ``.ovpn`` for ``user``, with the CA, the user's
    certificate and key embedded (a certificate is issued when the user has none valid)."""
    from novanet.vpn import certs, render

    names.project_id(project)
    certs.safe_name(project, "project id")
    certs.safe_name(user, "user name")
    _require_vlan(ctx)
    net = run(ctx, lambda conn: _wanted_network(conn, project), write=False)
    p = _paths(ctx, project)
    if not p.ca_cert.exists() or not p.server_cert.exists():
        raise NotFound(f"the VPN of project {project} has no certificates here; run `novanet vpn create`")
    cert = None
    if p.client_cert(user).exists() and p.client_key(user).exists():
        existing = certs.load_cert(p.client_cert(user))
        serial = format(existing.serial_number, "x")

        def usable(conn: Connection) -> bool:
            r = conn.execute(sa.select(vpn_certs.c.revoked_at).where(vpn_certs.c.serial == serial)).first()
            return r is not None and r.revoked_at is None

        if certs.is_valid(existing) and run(ctx, usable, write=False):
            cert = existing
    if cert is None:
        issued = certs.issue_client(ctx.config, p, project, user)
        run(ctx, lambda conn: _record_cert(conn, ctx, project, user, issued))
        cert = issued
    assert net.vpn_public_address is not None and net.vpn_public_port is not None
    return render.client_config(
        project,
        net.vpn_public_address,
        net.vpn_public_port,
        ca_pem=p.ca_cert.read_text(),
        cert_pem=certs.cert_pem(cert).decode(),
        key_pem=p.client_key(user).read_text(),
    )


def revoke(ctx: Ctx, project: str, user: str) -> int:
    """`vpn revoke`: every certificate of ``user`` in ``project`` goes on the CRL, which
    the running server re-reads at the next connection. Returns how many were revoked."""
    from novanet.vpn import certs

    names.project_id(project)
    certs.safe_name(project, "project id")
    certs.safe_name(user, "user name")
    _require_vlan(ctx)
    p = _paths(ctx, project)
    ca = _ca_name(ctx, project)

    def tx(conn: Connection) -> int:
        _vlan_network(conn, project)
        live = (
            conn.execute(
                sa.select(vpn_certs.c.id).where(
                    vpn_certs.c.project_id == project,
                    vpn_certs.c.user_name == user,
                    vpn_certs.c.revoked_at.is_(None),
                )
            )
            .scalars()
            .all()
        )
        if not live:
            raise NotFound(f"user {user} holds no unrevoked VPN certificate of project {project}")
        conn.execute(vpn_certs.update().where(vpn_certs.c.id.in_(live)).values(revoked_at=utcnow()))
        if p.ca_key.exists():
            # Signed inside the transaction: were it to fail, nothing is marked revoked.
            certs.write_crl(ctx.config, p, _revoked(conn, ca))
        return len(live)

    count = run(ctx, tx)
    for f in (p.client_cert(user), p.client_key(user)):
        f.unlink(missing_ok=True)
    return count


def bundle(ctx: Ctx, project: str) -> bytes:
    """`vpn bundle`: the boot bundle (tar.gz) of ``project``'s VPN run as a virtual machine."""
    from novanet.vpn import render

    names.project_id(project)
    _require_vlan(ctx)

    def tx(conn: Connection) -> tuple[Network, tuple[str, str] | None]:
        net = _wanted_network(conn, project)
        return net, client_range(conn, net)

    net, pool = run(ctx, tx, write=False)
    if pool is None:
        raise InvalidInput(f"network {net.cidr} reserves no VPN client addresses")
    p = _paths(ctx, project)
    if not p.server_key.exists():
        raise NotFound(f"the VPN of project {project} has no server key here; run `novanet vpn create`")
    return render.bundle(
        server_spec(net, pool),
        ca_pem=p.ca_cert.read_bytes(),
        cert_pem=p.server_cert.read_bytes(),
        key_pem=p.server_key.read_bytes(),
        crl_pem=p.crl.read_bytes(),
    )


def change(ctx: Ctx, project: str, ip: str, port: int) -> list[Network]:
    """`vpn change`: point the project's VPN at ``ip``:``port`` (DNATed to vpn_private:1194)."""
    names.project_id(project)
    address = str(ipam.parse_address(ip, "VPN public address"))
    names.port(port, "VPN port")

    def tx(conn: Connection) -> list[Network]:
        net = _vlan_network(conn, project)
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
