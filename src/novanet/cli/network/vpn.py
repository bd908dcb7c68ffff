"""`novanet vpn ...`: the cloudpipe VPN of VLAN projects."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service
from novanet.domain.errors import InvalidInput

app = typer.Typer(help="Cloudpipe VPNs of VLAN projects: certificates, client configs, endpoints.")

ProjectOpt = Annotated[str, option("--project", metavar="PROJECT", help="The project (tenant) id.")]
UserOpt = Annotated[str, option("--user", metavar="USER", help="The user the client certificate is for.")]
OutputOpt = Annotated[
    str | None, option("--output", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
]


def _write(path: str | None, data: bytes) -> None:
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"--output {path} is a directory")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInput(f"--output {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    output.message(f"wrote {path}")


@app.command("create")
def create(ctx: typer.Context, project: ProjectOpt) -> None:
    """Create a project's VPN: CA material, server certificate, public endpoint; the
    agent serving the project's network starts it."""
    from novanet.service import vpn

    v = vpn.create(service(ctx), project)
    endpoint = f"{v['public_ip']}:{v['public_port']}"
    output.message(f"VPN of project {project}: {endpoint} -> {v['internal_ip']} ({v['network']})")


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every project's VPN and its state, probed: running (answers an OpenVPN handshake
    on its public address), down, pending (no host or certificate yet), invalid (server
    certificate expired or revoked)."""
    from novanet.service import vpn

    rows = vpn.list_vpns(service(ctx))
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        ["project", "internal ip", "public ip", "port", "state", "network", "host"],
        [
            [
                r["project_id"],
                r["internal_ip"],
                r["public_ip"],
                r["public_port"],
                r["state"],
                r["network"],
                r["host"],
            ]
            for r in rows
        ],
    )


@app.command("client-config")
def client_config(ctx: typer.Context, project: ProjectOpt, user: UserOpt, out: OutputOpt = None) -> None:
    """A ready .ovpn for USER (CA, certificate and key embedded) for a stock openvpn client."""
    from novanet.service import vpn

    text = vpn.client_config(service(ctx), project, user)
    _write(out, text.encode())


@app.command("revoke")
def revoke(ctx: typer.Context, project: ProjectOpt, user: UserOpt) -> None:
    """Revoke USER's certificates: the running VPN refuses them at the next connection."""
    from novanet.service import vpn

    n = vpn.revoke(service(ctx), project, user)
    output.message(f"revoked {n} certificate(s) of {user} in project {project}")


@app.command("bundle")
def bundle(
    ctx: typer.Context,
    project: ProjectOpt,
    out: OutputOpt = None,
    user_data: Annotated[
        bool, option("--user-data", help="A user-data shell script embedding the bundle instead of tar.gz.")
    ] = False,
) -> None:
    """The boot bundle (server.conf, keys, CA, CRL, start.sh) of a VPN run as a virtual machine."""
    from novanet.service import vpn

    data = vpn.bundle(service(ctx), project)
    if user_data:
        from novanet.vpn.render import user_data as script

        data = script(data).encode()
    elif out is None and sys.stdout.isatty():
        raise InvalidInput("the bundle is a tar.gz: give --output FILE or redirect stdout")
    _write(out, data)


@app.command("change")
def change(
    ctx: typer.Context,
    project: Annotated[
        str, typer.Option("--project", metavar="PROJECT", help="Project whose VLAN network's VPN moves.")
    ],
    ip: Annotated[str, typer.Option("--ip", metavar="IP", help="Public address of the VPN.")],
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Public UDP port of the VPN.")],
) -> None:
    """Point a project's VPN at a public address and port (DNATed to its VPN appliance)."""
    from novanet.service import vpn

    nets = vpn.change(service(ctx), project, ip, port)
    for n in nets:
        output.message(f"VPN of project {project} is {n.vpn_public_address}:{n.vpn_public_port} ({n.cidr})")
