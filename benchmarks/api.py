"""API benchmark: allocate + deallocate through the native REST API, 16 clients at once.

    .venv/bin/python benchmarks/api.py --backend both
    .venv/bin/python benchmarks/api.py --backend postgresql --clients 16 --instances 4000 --workers 2 --json

Per backend, on a fresh throw-away database (a SQLite file in a temporary directory, or a
PostgreSQL database created next to --pg-url and dropped afterwards), the script:

1. migrates the schema, creates one FlatDHCP network 10.0.0.0/16 and a service token;
2. starts `novanet api` on a free loopback port (--workers N, access log on, to /dev/null);
3. runs --clients threads, each with one keep-alive HTTP connection, each allocating
   (POST /v1/instances) and then deallocating (DELETE /v1/instances/{uuid}) its share of
   --instances, timing every request;
4. checks that no two allocations got the same address (and that the database holds no
   allocated address afterwards), then stops the API with SIGTERM.

Reported: allocations/s and deallocations/s (wall clock of each phase), p50/p99 latency
of each, errors, duplicates. Exit status 1 when any request failed or any address was
handed out twice. The clients run on the same machine as the server (2 cores here): the
numbers include their cost. Traffic: loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.db.schema import fixed_ips
from novanet.domain.modes import FLATDHCP
from novanet.service import networks as N
from novanet.service import tokens
from novanet.service.context import Ctx

DEFAULT_PG_URL = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
PG_URL_ENV = "NOVANET_TEST_PG_URL"
NOVANET = str(Path(sys.executable).with_name("novanet"))


@contextlib.contextmanager
def database(backend: str, pg_url: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="novanet-bench-") as d:
            yield f"sqlite:///{d}/novanet.sqlite"
        return
    base = make_url(pg_url)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"novanet_bench_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


class Client(threading.Thread):
    def __init__(self, port: int, token: str, uuids: list[str], start: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.uuids, self.barrier = port, token, uuids, start
        self.alloc: list[float] = []
        self.dealloc: list[float] = []
        self.addresses: list[str] = []
        self.errors: list[str] = []
        self.phase2 = threading.Event()

    def _call(self, conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-Auth-Token": self.token, "Content-Type": "application/json"}
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # the server closed a keep-alive connection that sat idle between the phases:
            # the request never reached it, send it again on a new connection
            conn.close()
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            self.errors.append(f"{method} {path}: {resp.status} {payload[:200]!r}")
            return None
        return json.loads(payload)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.barrier.wait()
        for u in self.uuids:
            t = time.perf_counter()
            info = self._call(conn, "POST", "/v1/instances", {"uuid": u, "project_id": "bench", "host": "c1"})
            self.alloc.append(time.perf_counter() - t)
            if info:
                self.addresses.append(info[0]["network"]["subnets"][0]["ips"][0]["address"])
        self.barrier.wait()  # every client done allocating
        self.barrier.wait()  # deallocation starts together
        for u in self.uuids:
            t = time.perf_counter()
            self._call(conn, "DELETE", f"/v1/instances/{u}")
            self.dealloc.append(time.perf_counter() - t)
        conn.close()


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with database(backend, args.pg_url) as url:
        engine = create_engine(url)
        sync(engine)
        ctx = Ctx(
            engine,
            C.load(
                overrides={
                    "network_manager": "flatdhcp",
                    "connection": url,
                    "flat_network_bridge": "br100",
                    "quota_fixed_ips": "-1",
                }
            ),
        )
        N.create_networks(ctx, FLATDHCP, N.NetworkRequest("bench", "10.0.0.0/16", network_size=65536))
        token = tokens.create(ctx, "compute", role="service")["token"]
        port = free_port()
        log = open(os.devnull, "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [NOVANET, "--db", url, "--network-manager", "flatdhcp", "api", "--port", str(port),
             "--workers", str(args.workers)],
            stdout=log, stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{backend}: the API did not start")
                time.sleep(0.2)
            uuids = [str(uuid.uuid4()) for _ in range(args.instances)]
            barrier = threading.Barrier(args.clients + 1)
            clients = [Client(port, token, uuids[i :: args.clients], barrier) for i in range(args.clients)]
            for c in clients:
                c.start()
            barrier.wait()
            t0 = time.perf_counter()
            barrier.wait()
            t_alloc = time.perf_counter() - t0
            barrier.wait()
            t1 = time.perf_counter()
            for c in clients:
                c.join()
            t_dealloc = time.perf_counter() - t1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
        addresses = [a for c in clients for a in c.addresses]
        with engine.connect() as conn:
            still = conn.execute(
                sa.select(sa.func.count()).select_from(fixed_ips).where(fixed_ips.c.allocated.is_(True))
            ).scalar_one()
        engine.dispose()
    alloc = [x for c in clients for x in c.alloc]
    dealloc = [x for c in clients for x in c.dealloc]
    errors = [e for c in clients for e in c.errors]
    return {
        "backend": backend,
        "clients": args.clients,
        "workers": args.workers,
        "instances": args.instances,
        "alloc_per_s": round(len(alloc) / t_alloc, 1),
        "alloc_p50_ms": round(pct(alloc, 50), 1),
        "alloc_p99_ms": round(pct(alloc, 99), 1),
        "dealloc_per_s": round(len(dealloc) / t_dealloc, 1),
        "dealloc_p50_ms": round(pct(dealloc, 50), 1),
        "dealloc_p99_ms": round(pct(dealloc, 99), 1),
        "mean_alloc_ms": round(statistics.fmean(alloc) * 1000, 1),
        "errors": len(errors),
        "first_errors": errors[:3],
        "duplicates": len(addresses) - len(set(addresses)),
        "allocated_after": still,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--instances", type=int, default=3200)
    p.add_argument("--workers", type=int, default=2, help="API worker processes")
    p.add_argument("--pg-url", default=os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [run_backend(b, args) for b in backends]
    if args.json:
        print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                          "results": results}, indent=2))  # fmt: skip
    else:
        cols = ("backend", "alloc_per_s", "alloc_p50_ms", "alloc_p99_ms", "dealloc_per_s", "dealloc_p50_ms",
                "dealloc_p99_ms", "errors", "duplicates")  # fmt: skip
        print("  ".join(f"{c:>14}" for c in cols))
        for r in results:
            print("  ".join(f"{r[c]!s:>14}" for c in cols))
    bad = any(r["errors"] or r["duplicates"] or r["allocated_after"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
