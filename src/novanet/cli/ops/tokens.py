"""`novanet token ...`: API tokens (X-Auth-Token), printed once, stored as hashes."""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service

app = typer.Typer(help="API tokens: create (printed once), list, revoke.")

JsonOpt = Annotated[bool, option("--json", help="Print JSON instead of text.")]


@app.command("create")
def create(
    ctx: typer.Context,
    project: Annotated[str, option("--project", metavar="PROJECT", help="Project the token acts for.")],
    user: Annotated[str | None, option("--user", metavar="USER", help="User name, for the logs.")] = None,
    admin: Annotated[bool, option("--admin", help="Role admin: every project, admin operations.")] = False,
    service_role: Annotated[
        bool,
        option("--service", help="Role service: a compute host's allocate/deallocate for any project."),
    ] = False,
    expires: Annotated[
        str | None,
        option("--expires", metavar="DURATION", help="Lifetime: 3600, 30m, 12h, 7d, 2w [never]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it, alone on standard output (it is not shown again)."""
    from novanet.service import tokens

    if admin and service_role:
        raise typer.BadParameter("--admin and --service exclude each other")
    role = "admin" if admin else "service" if service_role else "member"
    info = tokens.create(service(ctx), project, user=user, role=role, expires=expires)
    if as_json:
        output.emit_json({k: info[k] for k in ("token", "id", "project_id", "user", "roles", "expires_at")})
        return
    output.message(info["token"])


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, option("--project", metavar="PROJECT", help="Only this project.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (their ids, never the secrets) with project, roles and state."""
    from novanet.service import tokens

    rows = tokens.list_tokens(service(ctx), project)
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        ("id", "project", "user", "roles", "created", "expires", "state"),
        [
            [
                r["id"],
                r["project_id"],
                r["user"],
                ",".join(r["roles"]),
                r["created_at"],
                r["expires_at"],
                r["state"],
            ]
            for r in rows
        ],
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(metavar="ID", help="Token id (from `token list`) or the token.")],
) -> None:
    """Revoke a token: every later request with it answers 401."""
    from novanet.service import tokens

    info = tokens.revoke(service(ctx), token)
    output.message(f"revoked token {info['id']} of project {info['project_id']}")
