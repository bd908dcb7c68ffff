"""Fixtures for the database tier: every test runs on SQLite and PostgreSQL.

PostgreSQL URL: ``NOVANET_TEST_PG_URL`` (set by scripts/test.sh). When it is
unset, the local default from scripts/pg-ensure.sh is tried; if that server is
unreachable the PostgreSQL variants are skipped -- except under CI, where a
missing PostgreSQL is an error, never a silent skip.

Each PostgreSQL test gets its own throw-away database ``novanet_t_<hex>``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from lifecycle_support import Env, open_env
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

PG_URL_ENV = "NOVANET_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
UNREACHABLE = "PostgreSQL not reachable (run scripts/pg-ensure.sh)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _admin_engine(url: URL) -> sa.Engine:
    return sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )


def _render(url: URL) -> str:
    # str(URL) masks the password; tests need the real one.
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_base_url() -> URL:
    """URL of the PostgreSQL database used to create per-test databases."""
    env_url = os.environ.get(PG_URL_ENV)
    if not env_url and _in_ci():
        pytest.fail(
            f"{PG_URL_ENV} is not set under CI; the PostgreSQL tier must run in CI "
            "(scripts/test.sh sets it via scripts/pg-ensure.sh)",
            pytrace=False,
        )
    url = make_url(env_url or DEFAULT_PG_URL)
    engine = _admin_engine(url)
    error: str | None = None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        error = str(exc.orig)
    finally:
        engine.dispose()
    if error is not None:
        # An explicitly configured server (or CI) must work; only the implicit
        # local default may be skipped.
        if env_url or _in_ci():
            pytest.fail(f"{UNREACHABLE}: {url!s}: {error}", pytrace=False)
        pytest.skip(reason=UNREACHABLE)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/novanet.sqlite"
        return

    base: URL = request.getfixturevalue("pg_base_url")
    name = f"novanet_t_{secrets.token_hex(8)}"
    admin = _admin_engine(base)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield _render(base.set(database=name))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    """A migrated database of either backend, with contexts per manager (lifecycle tests)."""
    with open_env(db_url) as e:
        yield e
