"""`novanet db ...`: schema migrations (`novanet vpn ...` lives in cli/network/vpn.py)."""

from __future__ import annotations

import typer

from novanet.cli import output
from novanet.cli.state import state

db_app = typer.Typer(help="The database schema.")


@db_app.command("sync")
def sync(ctx: typer.Context) -> None:
    """Create or upgrade the schema to this novanet's revision (needed once on PostgreSQL)."""
    from novanet.db.migrate import sync as migrate

    _before, after = migrate(state(ctx).engine())
    output.message(f"database at revision {after}")
