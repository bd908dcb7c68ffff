"""Schema migrations with Alembic, configured in code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from novanet.db.engine import HEAD_REVISION, current_revision, describe, is_sqlite
from novanet.domain.errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"


def sync(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the schema to the newest revision; returns (before, after)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    before = current_revision(engine)
    _refuse_newer(engine, before)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    return before, current_revision(engine) or HEAD_REVISION


def ensure_schema(engine: Engine) -> None:
    """SQLite (the embedded default) is created and migrated on first use; PostgreSQL
    must be migrated on purpose with `novanet db sync`."""
    rev = current_revision(engine)
    if rev == HEAD_REVISION:
        return
    _refuse_newer(engine, rev)
    if is_sqlite(engine):
        sync(engine)
        return
    if rev is None:
        raise DatabaseError("the database has no novanet schema: run `novanet db sync` first")
    raise DatabaseError(
        f"the database schema is at revision {rev}, this novanet needs {HEAD_REVISION}: run `novanet db sync`"
    )


def _known_revisions() -> set[str]:
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def _refuse_newer(engine: Engine, rev: str | None) -> None:
    if rev is not None and rev not in _known_revisions():
        raise DatabaseError(
            f"the schema of {describe(engine)} is at revision {rev}, unknown to this novanet"
            f" (newest {HEAD_REVISION}): upgrade novanet"
        )
