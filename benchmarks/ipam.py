"""IPAM benchmark: create a /16 FlatDHCP network, allocate N instances, deallocate them.

    .venv/bin/python benchmarks/ipam.py --backend both
    .venv/bin/python benchmarks/ipam.py --backend sqlite --instances 2000 --json

Each backend runs on a fresh, throw-away database: a SQLite file in a temporary
directory, or a PostgreSQL database created for the run and dropped afterwards (the
server from scripts/pg-ensure.sh; --pg-url or NOVANET_TEST_PG_URL names another).

The allocation loop is single-process and sequential: it measures the cost of one
allocate_for_instance call and whether that cost grows as the network fills up. The
exit status guards against that growth: it is 1 when the slowdown (time per allocation
of the last 1000 over the first 1000) exceeds --max-slowdown (default 1.5), 2 on an
error such as an unreachable database. By default the slowdown compares the median time
per allocation of the two windows, which shrugs off bursts of load from other processes
yet moves with any cost that grows with the fill level; ``--gate wall`` compares the
windows' wall times (their allocations/s) instead, and ``--gate cpu`` the CPU time spent
per allocation in each window by this process and by the database's server processes
(PostgreSQL's backends, read from /proc: the server must run on this machine), which
other load on the machine moves least of the three. On PostgreSQL, autovacuum is off for
the run and the planner statistics are refreshed at fixed points (--pg-stats: by
default where autovacuum's analyze rule would have refreshed them, between windows and
outside the timing), so that runs do not differ by when autovacuum happened to run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.domain.modes import FLATDHCP
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

DEFAULT_PG_URL = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
PG_URL_ENV = "NOVANET_TEST_PG_URL"
FIXED_RANGE = "10.0.0.0/16"
NETWORK_SIZE = 65536
USABLE = NETWORK_SIZE - 3  # FlatDHCP reserves network, gateway and broadcast
WINDOW = 1000

# Targets (docs/benchmarks.md). Only the slowdown decides the exit status; the others
# depend too much on the machine to fail a run, and are reported as met or not.
TARGET_CREATE_S = 5.0
TARGET_SQLITE_ALLOC_PER_S = 500.0
DEFAULT_MAX_SLOWDOWN = 1.5


@dataclass
class Result:
    backend: str
    server: str
    instances: int
    window: int
    schema_s: float
    network_create_s: float
    first_window_per_s: float
    last_window_per_s: float
    slowdown: float  # wall time of the last window / the first window
    slowdown_median: float  # median time per allocation, last window / first window
    overall_alloc_per_s: float
    alloc_p50_ms: float
    alloc_p99_ms: float
    alloc_max_ms: float
    dealloc_s: float
    dealloc_per_s: float
    load_before: float  # 1-minute load average before and after the run: other work on
    load_after: float  # the machine makes every number here slower and noisier
    pg_stats: str | None  # PostgreSQL planner statistics during the run (see --pg-stats)
    window_per_s: list[float]  # allocations/s of each consecutive window of 1000
    cpu_first_ms: float | None = None  # CPU per allocation (client + server) in the first window
    cpu_last_ms: float | None = None  # ... and in the last; None: the server's CPU is not readable
    slowdown_cpu: float | None = None


# --- fresh databases ---------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="novanet-bench-") as tmp:
        yield f"sqlite:///{tmp}/novanet.sqlite"


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A database of its own on the server of ``base_url``, dropped afterwards."""
    base: URL = make_url(base_url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"novanet_bench_{secrets.token_hex(6)}"
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- the run -----------------------------------------------------------------------


def _count(engine: sa.Engine, sql: str) -> int:
    """An independent check (plain SQL) that the service did what it reported."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def _server_version(engine: sa.Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as conn:
        return "PostgreSQL " + str(conn.execute(sa.text("SHOW server_version")).scalar_one())


def _progress(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


PG_TABLES = ("networks", "fixed_ips", "instances", "virtual_interfaces", "changes")


_TICK = os.sysconf("SC_CLK_TCK")


def _server_cpu(engine: sa.Engine) -> float | None:
    """CPU seconds used so far by the server processes of this run's database: PostgreSQL's
    backends connected to it (the run's own database: nobody else's); 0 for SQLite (no
    server); None when /proc does not show them (a server on another machine)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return total


def _cpu(engine: sa.Engine) -> float | None:
    server = _server_cpu(engine)
    return None if server is None else time.process_time() + server


def _autoanalyze(engine: sa.Engine) -> list[str]:
    """What autovacuum's analyze would do by now, done at once: ANALYZE each table changed
    by more than autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x its rows
    since its last analyze (the server's settings; 50 + 10% by default). Returns the
    tables analyzed."""
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                    " WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::int"
                    " + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)"
                )
            )
            .scalars()
            .all()
        )
        for table in rows:
            conn.exec_driver_sql(f'ANALYZE "{table}"')
        conn.commit()
    return list(rows)


def _freeze_planner_stats(engine: sa.Engine, mode: str) -> None:
    """Make the PostgreSQL planner's view of the tables the same in every run.

    The plan for picking a free address depends on the statistics, and autovacuum
    gathers them whenever its launcher gets to this database (auto-analyze right after
    the 65,536-row insert, again after ~10% of the rows changed): left alone, runs differ
    by when that happens. So autovacuum is off for these tables during the run, and the
    statistics are either those a real deployment has within a minute of creating the
    network (``analyzed``: ANALYZE now, all addresses free) or none at all (``none``).
    """
    with engine.connect() as conn:
        for table in PG_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        if mode in ("analyzed", "auto"):
            conn.exec_driver_sql("ANALYZE")
        conn.commit()


def bench(backend: str, url: str, instances: int, *, verbose: bool, pg_stats: str = "analyzed") -> Result:
    cfg = C.load(
        overrides={
            "connection": url,
            "network_manager": "flatdhcp",
            "flat_network_bridge": "br100",
            "host": "bench-host",
            "quota_fixed_ips": -1,
        }
    )
    load_before = os.getloadavg()[0]
    engine = create_engine(url)
    try:
        t = time.perf_counter()
        sync(engine)
        schema_s = time.perf_counter() - t
        ctx = Ctx(engine, cfg)
        server = _server_version(engine)

        _progress(verbose, f"[{backend}] creating {FIXED_RANGE} (network_size={NETWORK_SIZE})")
        t = time.perf_counter()
        N.create_networks(
            ctx,
            FLATDHCP,
            N.NetworkRequest("bench", FIXED_RANGE, num_networks=1, network_size=NETWORK_SIZE),
        )
        create_s = time.perf_counter() - t
        if engine.dialect.name == "postgresql":
            _freeze_planner_stats(engine, pg_stats)

        uuids = [str(uuid.uuid4()) for _ in range(instances)]
        done = [0.0] * instances
        window = min(WINDOW, instances // 2)
        # CPU (client + server) at the window edges: before the first allocation, after
        # the first window, before the last window, after the last allocation
        auto = engine.dialect.name == "postgresql" and pg_stats == "auto"
        cpu: list[float | None] = [None] * 4
        _progress(verbose, f"[{backend}] allocating {instances} instances")
        cpu[0] = _cpu(engine)
        start = time.perf_counter()
        began = [0.0] * instances  # when each allocation started (ANALYZE time left out)
        mark = start
        for i, u in enumerate(uuids):
            if i == instances - window:
                cpu[2] = _cpu(engine)
                mark = time.perf_counter()
            began[i] = mark
            I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(u, "bench", "bench-host"))
            done[i] = mark = time.perf_counter()
            if i == window - 1:
                cpu[1] = _cpu(engine)
            if auto and (i + 1) % WINDOW == 0 and i + 1 < instances:
                _autoanalyze(engine)  # between windows, outside the timing
                mark = time.perf_counter()
            if verbose and (i + 1) % WINDOW == 0:
                took = sum(done[k] - began[k] for k in range(max(0, i + 1 - WINDOW), i + 1))
                _progress(verbose, f"[{backend}]   {i + 1} allocated, last {WINDOW} at {WINDOW / took:.0f}/s")
        cpu[3] = _cpu(engine)
        alloc_total = sum(d - b for d, b in zip(done, began, strict=True))
        held = _count(engine, "SELECT count(*) FROM fixed_ips WHERE instance_uuid IS NOT NULL")
        if held != instances:
            raise RuntimeError(f"{held} addresses held after {instances} allocations")

        _progress(verbose, f"[{backend}] deallocating {instances} instances")
        t = time.perf_counter()
        for u in uuids:
            I.deallocate_for_instance(ctx, u)
        dealloc_s = time.perf_counter() - t
        held = _count(engine, "SELECT count(*) FROM fixed_ips WHERE instance_uuid IS NOT NULL")
        if held != 0:
            raise RuntimeError(f"{held} addresses still held after deallocating everything")
    finally:
        engine.dispose()

    per_call = [d - b for d, b in zip(done, began, strict=True)]
    first_s = sum(per_call[:window])
    last_s = sum(per_call[-window:])
    median_first = statistics.median(per_call[:window])
    median_last = statistics.median(per_call[-window:])
    lat = sorted(per_call)
    c0, c1, c2, c3 = cpu
    cpu_first = cpu_last = None
    if c0 is not None and c1 is not None and c2 is not None and c3 is not None:
        cpu_first, cpu_last = (c1 - c0) / window * 1000, (c3 - c2) / window * 1000
    return Result(
        backend=backend,
        server=server,
        instances=instances,
        window=window,
        schema_s=schema_s,
        network_create_s=create_s,
        first_window_per_s=window / first_s,
        last_window_per_s=window / last_s,
        slowdown=last_s / first_s,
        slowdown_median=median_last / median_first,
        overall_alloc_per_s=instances / alloc_total,
        alloc_p50_ms=statistics.median(lat) * 1000,
        alloc_p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        alloc_max_ms=lat[-1] * 1000,
        dealloc_s=dealloc_s,
        dealloc_per_s=instances / dealloc_s,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        pg_stats=pg_stats if backend == "postgresql" else None,
        window_per_s=[
            round(len(chunk) / sum(chunk), 1)
            for chunk in (per_call[k : k + WINDOW] for k in range(0, instances, WINDOW))
        ],
        cpu_first_ms=cpu_first,
        cpu_last_ms=cpu_last,
        slowdown_cpu=cpu_last / cpu_first if cpu_first and cpu_last is not None else None,
    )


# --- reporting -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "os": os_name,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
    }


def gated(r: Result, gate: str) -> float:
    if gate == "cpu":
        if r.slowdown_cpu is None:
            raise RuntimeError("--gate cpu: the database server's CPU time is not readable here")
        return r.slowdown_cpu
    return r.slowdown_median if gate == "median" else r.slowdown


def verdicts(r: Result, max_slowdown: float, gate: str) -> dict[str, bool]:
    out = {
        f"network create < {TARGET_CREATE_S:g} s": r.network_create_s < TARGET_CREATE_S,
        f"slowdown ({gate}) <= {max_slowdown:g}": gated(r, gate) <= max_slowdown,
    }
    if r.backend == "sqlite":
        out[f"allocations >= {TARGET_SQLITE_ALLOC_PER_S:g}/s"] = (
            r.overall_alloc_per_s >= TARGET_SQLITE_ALLOC_PER_S
        )
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _cpu_cell(r: Result) -> str:
    return f"{_fmt(r.cpu_first_ms)} -> {_fmt(r.cpu_last_ms)}"


def table(results: list[Result], max_slowdown: float, gate: str) -> str:
    rows: list[tuple[str, ...]] = [
        ("", *(r.backend for r in results)),
        ("server", *(r.server for r in results)),
        ("instances", *(str(r.instances) for r in results)),
        ("schema sync (s)", *(f"{r.schema_s:.2f}" for r in results)),
        ("network create /16 (s)", *(f"{r.network_create_s:.2f}" for r in results)),
        ("alloc/s, first window", *(f"{r.first_window_per_s:.0f}  ({r.window})" for r in results)),
        ("alloc/s, last window", *(f"{r.last_window_per_s:.0f}  ({r.window})" for r in results)),
        ("slowdown last/first (wall)", *(f"{r.slowdown:.2f}" for r in results)),
        ("slowdown last/first (median)", *(f"{r.slowdown_median:.2f}" for r in results)),
        ("CPU ms/alloc first -> last", *(_cpu_cell(r) for r in results)),
        ("slowdown last/first (CPU)", *(_fmt(r.slowdown_cpu) for r in results)),
        ("alloc/s, overall", *(f"{r.overall_alloc_per_s:.0f}" for r in results)),
        ("alloc latency p50 (ms)", *(f"{r.alloc_p50_ms:.2f}" for r in results)),
        ("alloc latency p99 (ms)", *(f"{r.alloc_p99_ms:.2f}" for r in results)),
        ("alloc latency max (ms)", *(f"{r.alloc_max_ms:.1f}" for r in results)),
        ("deallocate all (s)", *(f"{r.dealloc_s:.2f}" for r in results)),
        ("dealloc/s", *(f"{r.dealloc_per_s:.0f}" for r in results)),
        ("load average before/after", *(f"{r.load_before:.1f} / {r.load_after:.1f}" for r in results)),
        ("planner statistics", *(r.pg_stats or "-" for r in results)),
    ]
    names = sorted({k for r in results for k in verdicts(r, max_slowdown, gate)})
    for name in names:
        cells = []
        for r in results:
            v = verdicts(r, max_slowdown, gate).get(name)
            cells.append("-" if v is None else ("met" if v else "MISSED"))
        rows.append((f"target: {name}", *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def why(r: Result, max_slowdown: float, gate: str) -> str:
    msg = (
        f"{r.backend}: the last {r.window} allocations took {r.slowdown:.2f}x as long as the first"
        f" {r.window} ({r.first_window_per_s:.0f}/s -> {r.last_window_per_s:.0f}/s; median time per"
        f" allocation {r.slowdown_median:.2f}x), more than the allowed {max_slowdown:g}x ({gate}):"
        " allocation cost grows with how full the network is"
    )
    if gate == "wall" and r.slowdown_median <= max_slowdown:
        msg += (
            f". The median time per allocation did not grow as much, and the load average went"
            f" {r.load_before:.1f} -> {r.load_after:.1f}: perhaps other work on the machine;"
            " rerun on a quiet machine or use the default --gate median"
        )
    return msg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    p.add_argument("--instances", type=int, default=10000, help="instances to allocate (default 10000)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL,
        help=f"a PostgreSQL database on the server to use (default ${PG_URL_ENV} or {DEFAULT_PG_URL});"
        " the run creates and drops a database of its own there",
    )
    p.add_argument(
        "--max-slowdown",
        type=float,
        default=DEFAULT_MAX_SLOWDOWN,
        help="fail when last/first time per allocation exceeds this (default 1.5)",
    )
    p.add_argument(
        "--gate",
        choices=("wall", "median", "cpu"),
        default="median",
        help="which slowdown decides the exit status: the windows' median time per allocation"
        " (default; robust against other load on the machine), their wall time, or the CPU"
        " time per allocation of this process and the database server (needs the server on"
        " this machine)",
    )
    p.add_argument(
        "--pg-stats",
        choices=("auto", "analyzed", "none"),
        default="auto",
        help="PostgreSQL planner statistics during the run, autovacuum being off: 'auto'"
        " (default; ANALYZE after creating the network, then, between windows of 1000"
        " allocations and outside the timing, each table autovacuum's analyze rule would"
        " have analyzed by then), 'analyzed' (ANALYZE once, after creating the network:"
        " the statistics of empty instance tables for the whole run) or 'none'",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if not 2 <= args.instances <= USABLE:
        p.error(f"--instances must be 2-{USABLE} (the /16 has {USABLE} usable addresses)")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: list[Result] = []
    for backend in backends:
        try:
            if backend == "sqlite":
                with sqlite_database() as url:
                    results.append(bench(backend, url, args.instances, verbose=not args.quiet))
            else:
                with postgres_database(args.pg_url) as url:
                    results.append(
                        bench(backend, url, args.instances, verbose=not args.quiet, pg_stats=args.pg_stats)
                    )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"ipam benchmark: {backend}: {type(exc).__name__}: {first}", file=sys.stderr)
            if backend == "postgresql":
                print(
                    "  (is PostgreSQL running? `bash scripts/pg-ensure.sh`, or pass --pg-url)",
                    file=sys.stderr,
                )
            return 2

    failures = [
        why(r, args.max_slowdown, args.gate) for r in results if gated(r, args.gate) > args.max_slowdown
    ]
    if args.json:
        doc = {
            "machine": machine(),
            "fixed_range": FIXED_RANGE,
            "network_size": NETWORK_SIZE,
            "targets": {
                "network_create_s_below": TARGET_CREATE_S,
                "sqlite_alloc_per_s_at_least": TARGET_SQLITE_ALLOC_PER_S,
                "max_slowdown": args.max_slowdown,
                "gate": args.gate,
            },
            "results": {
                r.backend: {**asdict(r), "targets_met": verdicts(r, args.max_slowdown, args.gate)}
                for r in results
            },
            "ok": not failures,
            "failures": failures,
        }
        print(json.dumps(doc, indent=2))
    else:
        m = machine()
        print(
            f"novanet IPAM benchmark, {m['date']}: {m['cpus']} CPUs ({m['cpu']}), {m['os']},"
            f" Python {m['python']}"
        )
        print(f"FlatDHCP {FIXED_RANGE}, network_size={NETWORK_SIZE}, single process\n")
        print(table(results, args.max_slowdown, args.gate))
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
