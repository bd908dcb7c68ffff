"""Kernel tier fixtures (helpers live in nslab.py, importable by name from test modules:
a module named conftest would clash with the other tiers' conftest files)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hostlab import Lab
from nslab import PREFIX, World, _need_root, sh


def _sweep() -> None:
    out = sh(["ip", "netns", "list"], check=False)
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        parts = name.split("-")
        creator = parts[-2] if len(parts) >= 3 else ""
        if creator.isdigit() and os.path.exists(f"/proc/{creator}"):
            continue  # its test session still runs
        if sh(["ip", "netns", "pids", name], check=False).split():
            continue  # someone is still using it: not ours to end
        sh(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="session", autouse=True)
def _netns_sweeper() -> Iterator[None]:
    if os.geteuid() == 0:
        _sweep()
    yield


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL ($NOVANET_TEST_PG_URL, else pg-ensure.sh's default),
    checked once. PostgreSQL is part of the test setup (scripts/test.sh starts it): an
    unreachable server fails the tests that need it, it never skips them."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = (
        os.environ.get("NOVANET_TEST_PG_URL") or "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
    )
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL not reachable (run scripts/pg-ensure.sh): {exc.orig}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def world() -> Iterator[World]:
    _need_root()
    w = World()
    try:
        yield w
    finally:
        w.cleanup()


@pytest.fixture
def lab(world: World) -> Iterator[Lab]:
    """Agents, a database and DHCP clients in ``world``; every process ended at the end."""
    lab = Lab(world)
    try:
        yield lab
    finally:
        lab.close()
