"""A database that is not there: one line for the CLI, 503 with Retry-After from the API,
and only then; any other database error stays what it was.

The outage is a PostgreSQL URL on a port nothing listens on (the shared server is never
touched); the control is a real error from a live database of either backend.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from novanet import config as C
from novanet.api.app import create_app
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.db.outage import is_outage
from novanet.domain.errors import DatabaseError, DatabaseUnavailable
from novanet.service import networks as N
from novanet.service.context import Ctx, run

NOVANET = str(Path(sys.executable).with_name("novanet"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


@pytest.fixture
def down_url() -> str:
    return f"postgresql+psycopg://novanet:novanet@127.0.0.1:{_closed_port()}/novanet"


def test_a_service_call_says_database_unavailable(down_url: str) -> None:
    ctx = Ctx(create_engine(down_url), C.load(overrides={"connection": down_url}))
    with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: connection failed"):
        N.list_networks(ctx)


def test_the_cli_prints_one_line_and_exits_non_zero(down_url: str, tmp_path: Path) -> None:
    conf = tmp_path / "n.conf"
    conf.write_text(f"[DEFAULT]\n[database]\nconnection = {down_url}\n")
    res = subprocess.run(
        [NOVANET, "--config-file", str(conf), "network", "list"], capture_output=True, text=True
    )
    assert res.returncode == 7
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("novanet: error: database unavailable: "), res.stderr


def test_the_api_answers_503_with_retry_after(down_url: str) -> None:
    ctx = Ctx(create_engine(down_url), C.load(overrides={"connection": down_url}))
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    resp = client.get("/v2/p1/os-floating-ips", headers={"X-Auth-Token": "secret-token"})
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == "5"
    body = resp.json()
    assert body["serviceUnavailable"]["message"].startswith("database unavailable: ")


def test_other_database_errors_are_not_outages(db_url: str) -> None:
    engine = create_engine(db_url)
    sync(engine)
    ctx = Ctx(engine, C.load(overrides={"connection": db_url}))
    try:
        with pytest.raises(DatabaseError) as info:
            run(ctx, lambda conn: conn.execute(sa.text("SELECT * FROM no_such_table")))
        assert not isinstance(info.value, DatabaseUnavailable)
        assert not is_outage(info.value.__cause__)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _kill_backends(pg_url: str, engine: sa.Engine) -> int:
    """End every server process of ``engine``'s pooled connections, from outside."""
    with engine.connect() as conn:
        mine = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    admin = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": mine})
            conn.commit()
    finally:
        admin.dispose()
    return int(mine)


def test_postgresql_connection_dead_while_idle_is_replaced_unseen(
    pg_base_url: sa.URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle pooled connection is pinged before use: one the server dropped is replaced
    and the call succeeds."""
    from novanet.db import engine as E

    pg_url = pg_base_url.render_as_string(hide_password=False)
    monkeypatch.setattr(E, "PG_PING_AFTER_IDLE", 0.0)  # every reuse counts as idle
    engine = create_engine(pg_url)
    try:
        _kill_backends(pg_url, engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_postgresql_connection_dead_after_recent_use_is_an_outage_once(
    pg_base_url: sa.URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used a moment ago is not pinged: if the server dropped it, the call is
    refused as an outage (the API's 503), and the next call gets a new connection."""
    from novanet.db import engine as E

    pg_url = pg_base_url.render_as_string(hide_password=False)
    monkeypatch.setattr(E, "PG_PING_AFTER_IDLE", 3600.0)
    engine = create_engine(pg_url)
    ctx = Ctx(engine, C.load(overrides={"connection": pg_url}))
    try:
        _kill_backends(pg_url, engine)
        with pytest.raises(DatabaseUnavailable):
            run(ctx, lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one(), write=False)
        assert run(ctx, lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one(), write=False) == 1
    finally:
        engine.dispose()
