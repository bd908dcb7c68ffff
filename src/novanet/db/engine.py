"""Engines for SQLite (embedded default) and PostgreSQL, and schema checks.

SQLite: WAL, foreign keys on, and every write transaction starts with BEGIN IMMEDIATE,
so concurrent writers queue on the database lock instead of failing halfway through
(pysqlite's deferred BEGIN upgrades to a write lock late and can deadlock).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError

from novanet.domain.errors import ConfigError, DatabaseError

# Bump together with a new migration in migrations/versions.
HEAD_REVISION = "0008"
FILE_MODE = 0o600  # database files: they hold every tenant's addresses
# PostgreSQL pool, per process: the connections kept open, and how many more may be opened
# (and closed again on return) under a burst. SQLAlchemy's 5 + 10 made a busy API process
# open and close a connection for most requests (a new server process each time).
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10
# A pooled PostgreSQL connection idle longer than this is pinged (one round trip) before
# use; one used more recently is not: were it dead after all (a restart, a failover), the
# statement fails as an outage (503 / "database unavailable"), and the pool drops every
# connection opened before that failure.
PG_PING_AFTER_IDLE = 1.0  # seconds


def create_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get their directory created (0755)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"invalid database URL {_redacted(url)!r}: use sqlite:///PATH or postgresql+psycopg://..."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, echo)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            engine = sa.create_engine(
                parsed, echo=echo, future=True, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW
            )
        except NoSuchModuleError:
            raise ConfigError(
                f"unsupported PostgreSQL driver in {describe_url(parsed)!r}: use postgresql+psycopg"
            ) from None
        _ping_when_idle(engine)
        return engine
    raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql+psycopg")


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for a connection that sat idle: under load the round trip
    of a ping per checkout was a good part of a short transaction."""

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["novanet_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if getattr(dbapi_conn, "broken", False) or dbapi_conn.closed:
            raise DisconnectionError("connection closed")
        since = record.info.get("novanet_idle_since")
        if since is None or time.monotonic() - since < PG_PING_AFTER_IDLE:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool opens a new connection instead
            raise DisconnectionError(str(exc)) from exc


def _sqlite_engine(parsed: sa.URL, echo: bool) -> Engine:
    db = parsed.database or ""
    if db and db != ":memory:" and not db.startswith("file:"):
        path = Path(db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create database directory {path.parent}: {exc.strerror}") from None
        try:
            _private(path)
        except OSError as exc:
            raise DatabaseError(f"cannot create database {path}: {exc.strerror}") from None
    engine = sa.create_engine(
        parsed,
        echo=echo,
        future=True,
        connect_args={"timeout": 60, "check_same_thread": False},
        poolclass=sa.pool.StaticPool if db in ("", ":memory:") else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite; BEGIN is emitted below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA busy_timeout = 60000")
        if db not in ("", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.info.get("begin_mode", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _private(path: Path) -> None:
    """The database file 0600 before SQLite opens it: SQLite gives its -wal and -shm files
    the mode of the database file, so all three stay private. Files made by an older
    version are tightened (when they are ours to change)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                f.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


def _redacted(url: str) -> str:
    """A URL that could not be parsed, without what may be a password."""
    return re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)


def describe_url(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def describe(engine: Engine) -> str:
    """The database for messages, without its password."""
    return engine.url.render_as_string(hide_password=True)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database, or None for an empty database."""
    try:
        with engine.connect() as conn:
            conn.info["begin_mode"] = "DEFERRED"
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
            return None if row is None else str(row[0])
    except DBAPIError as exc:
        from novanet.db.outage import is_outage, unavailable

        if is_outage(exc):
            raise unavailable(exc) from None
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseError(f"cannot use the database {describe(engine)}: {first}") from None
