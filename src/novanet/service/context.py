"""The context every use case runs in, and the transaction runner.

One unit of work = one database transaction. A unit that loses a race (a unique
constraint fires, SQLite is busy, PostgreSQL reports a deadlock or a serialization
failure) is run again from the start, so a taken address means "try the next" and
never a failure, and a refused command leaves the database exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from novanet.config import Config
from novanet.db.outage import is_outage, unavailable
from novanet.db.schema import changes
from novanet.domain.errors import Conflict, DatabaseError

T = TypeVar("T")
log = logging.getLogger("novanet.service")

_INSERT_CHANGE = changes.insert()

MAX_ATTEMPTS = 20


@dataclass
class Ctx:
    """What a use case needs: the database and the configuration. No globals."""

    engine: Engine
    config: Config

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"


class Retry(Exception):
    """Raised inside a unit of work that saw another writer win; the unit runs again."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_RETRYABLE_PG = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_PG:
        return True
    if isinstance(exc, OperationalError):
        msg = str(orig).lower()
        return "database is locked" in msg or "database is busy" in msg
    return False


def run(ctx: Ctx, fn: Callable[[Connection], T], *, write: bool = True) -> T:
    """Run ``fn`` in one transaction, again from the start when it lost a race."""
    last: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        try:
            with ctx.engine.connect() as conn:
                conn.info["begin_mode"] = "IMMEDIATE" if write else "DEFERRED"
                conn.info[_NOTIFY_KEY] = set()
                try:
                    with conn.begin():
                        result = fn(conn)
                    _notify(conn)
                finally:
                    conn.info.pop(_NOTIFY_KEY, None)
                return result
        except Retry as exc:
            last = exc
        except DBAPIError as exc:
            if is_outage(exc):
                raise unavailable(exc) from exc
            if not _retryable(exc):
                first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                raise DatabaseError(f"database error: {first}") from exc
            last = exc
        # Back off a little, more each time, so racing writers spread out.
        time.sleep(min(0.001 * (2**attempt), 0.05))
    detail = str(last).splitlines()[0] if last else "unknown"
    raise Conflict(f"gave up after {MAX_ATTEMPTS} attempts against concurrent changes: {detail}")


CHANNEL = "novanet_changes"  # changes that concern every host (no scope given)


def host_channel(host: str) -> str:
    """The NOTIFY channel of one host: a short, safe identifier whatever the name holds."""
    return "novanet_h_" + hashlib.blake2b(host.encode(), digest_size=8).hexdigest()


def network_channel(network_id: int) -> str:
    return f"novanet_n_{int(network_id)}"


def record(
    ctx: Ctx,
    conn: Connection,
    kind: str,
    *refs: str,
    hosts: Iterable[str | None] = (),
    networks: Iterable[int | None] = (),
) -> None:
    """Log what changed for the host agents, in the same transaction as the change.

    ``hosts`` and ``networks`` say whom it concerns: one row per ref and scope, and an
    agent reads only the rows of its host and of the networks it carries. With neither,
    the change concerns every host (one unscoped row per ref). PostgreSQL also wakes the
    agents concerned (NOTIFY on the host's or the network's channel, delivered on commit);
    SQLite agents poll the log.
    """
    scope_hosts, scope_nets = list(hosts), list(networks)
    record_many(ctx, conn, kind, [(r, scope_hosts, scope_nets) for r in refs])


Scoped = tuple[str, Iterable[str | None], Iterable[int | None]]


def record_many(ctx: Ctx, conn: Connection, kind: str, items: Iterable[Scoped]) -> None:
    """``record`` for many refs, each with its own scope (ref, hosts, networks): one
    insert and one wake-up per channel for a whole batch."""
    rows: list[dict[str, object]] = []
    channels: set[str] = set()
    for r, hosts, networks in items:
        scope_hosts = sorted({h for h in hosts if h})
        scope_nets = sorted({int(n) for n in networks if n is not None})
        if not scope_hosts and not scope_nets:  # unscoped: every agent's concern
            rows.append({"kind": kind, "ref": r, "host": None, "network_id": None})
            channels.add(CHANNEL)
            continue
        rows += [{"kind": kind, "ref": r, "host": h, "network_id": None} for h in scope_hosts]
        rows += [{"kind": kind, "ref": r, "host": None, "network_id": n} for n in scope_nets]
        channels.update([host_channel(h) for h in scope_hosts] + [network_channel(n) for n in scope_nets])
    if not rows:
        return
    conn.execute(_INSERT_CHANGE, rows)
    if ctx.is_postgres:
        pending = conn.info.get(_NOTIFY_KEY)
        if pending is None:  # not inside run(): notify with the change, as a plain NOTIFY
            for ch in sorted(channels):
                conn.execute(_NOTIFY_ONE, {"ch": ch})
        else:
            pending.update(channels)


_NOTIFY_KEY = "novanet_notify"
_NOTIFY_ONE = sa.text("SELECT pg_notify(:ch, '')")
_NOTIFY_ALL = sa.text(
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify(ch, '')"
    " FROM unnest(CAST(:chs AS text[])) AS ch"
)


def _notify(conn: Connection) -> None:
    """Wake the agents a committed unit concerns: after its commit, in a transaction of its
    own that does not wait for its WAL flush.

    PostgreSQL serializes the commits of transactions that NOTIFY (a database-wide lock
    held until the commit is flushed): with the NOTIFY inside each allocation, concurrent
    writers committed one flush at a time. A wake-up is only a hint (agents also poll the
    change log every second), so it may go after the commit and may be lost in a crash.
    """
    channels = conn.info.pop(_NOTIFY_KEY, None)
    if not channels:
        return
    try:
        # one statement in autocommit: its own transaction, one round trip; the local
        # setting is still in force when that transaction commits
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.execute(_NOTIFY_ALL, {"chs": sorted(channels)})
        auto.commit()
    except DBAPIError as exc:  # the change is committed; agents find it by polling
        log.warning("NOTIFY %s failed: %s", ", ".join(sorted(channels)), str(exc.orig).strip()[:200])


def lock(ctx: Ctx, conn: Connection, key: str) -> None:
    """A transaction-scoped lock on ``key`` (PostgreSQL advisory lock).

    SQLite needs none: BEGIN IMMEDIATE already makes write transactions one at a time.
    """
    if not ctx.is_postgres:
        return
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:k)"),
        {"k": int.from_bytes(digest, "big", signed=True)},
    )
