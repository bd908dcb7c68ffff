"""Telling "the database is not there" from every other database error.

A server that is down, restarting, failing over or refusing connections is an outage:
the command may succeed a moment later, unchanged. Entry points answer it with one line
("database unavailable: ..."), the API with 503 and Retry-After, and agents keep the
host exactly as it is and retry with backoff.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

from novanet.domain.errors import DatabaseUnavailable

# SQLSTATE classes and codes of a server that is gone or not accepting work now:
# 08 connection exception; 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
# connect now (starting up, shutting down, in recovery); 53300 too many connections;
# 25006 read-only transaction (a standby after a failover, until it is promoted).
_PG_CODES = {"57P01", "57P02", "57P03", "53300", "25006"}
_SQLITE_HINTS = ("unable to open database file", "disk i/o error")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (a SQLAlchemy DBAPIError) says the database is unreachable."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return str(sqlstate).startswith("08") or sqlstate in _PG_CODES
    if not isinstance(exc, OperationalError):
        return False
    text = str(orig).lower()
    if orig is not None and type(orig).__module__.startswith("psycopg"):
        return True  # no SQLSTATE: the connection itself failed (refused, reset, timed out)
    return any(h in text for h in _SQLITE_HINTS)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """The one-line error for an outage."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    return DatabaseUnavailable(f"database unavailable: {lines[0] if lines else type(orig).__name__}")
