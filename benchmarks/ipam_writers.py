"""Fixed IP allocation and deallocation with concurrent writers, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/ipam_writers.py --backend both            # 1 and 8 writers
    .venv/bin/python benchmarks/ipam_writers.py --backend postgresql --writers 1,8 --instances 8000
    .venv/bin/python benchmarks/ipam_writers.py --backend postgresql --pg-commit on --batch 1,10,50
    .venv/bin/python benchmarks/ipam_writers.py --json

Per backend, on a fresh database with one FlatDHCP /16 (the same network as ipam.py):
for each number of writers W (``--writers``, default ``1,8``), W processes each allocate
N/W instances with ``allocate_for_instance`` (one transaction each, as the API and the
CLI do), all starting together; then each deallocates its own with
``deallocate_for_instance``. Reported: allocations/s and deallocations/s over all
writers (wall time from the first start to the last end), and the rate of the first and
the last thousand allocations completed (flat = the cost does not grow as the network
fills). Plain SQL checks the counts after each phase.

``--batch B`` (comma-separated, default 1): each writer allocates B instances per
transaction with ``allocate_many`` (and deallocates B per transaction with
``deallocate_many``), one commit per batch: what batching and group commit give. B=1 is
the single-instance path (a batch of one).

PostgreSQL also runs with ``synchronous_commit=off`` for the session (``--pg-commit
both``, the default): each commit then no longer waits for its WAL flush, which shows how
much of the cost is the flush of one small transaction per allocation (what group commit
or batching would share). The data stays consistent; a crash of the server may lose the
last few hundred milliseconds of commits.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from ipam import FIXED_RANGE, NETWORK_SIZE, _freeze_planner_stats, postgres_database, sqlite_database

DEFAULT_PG = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
WINDOW = 1000


@dataclass
class Run:
    backend: str
    commit: str
    writers: int
    batch: int
    instances: int
    alloc_per_s: float
    dealloc_per_s: float
    first_window_per_s: float
    last_window_per_s: float
    client_cpu_ms: float  # CPU time of the writer processes per allocation
    client_cpu_dealloc_ms: float  # ... per deallocation
    load_before: float
    load_after: float


def _ctx(url: str) -> Any:
    from novanet import config as C
    from novanet.db.engine import create_engine
    from novanet.service.context import Ctx

    cfg = C.load(
        overrides={
            "connection": url,
            "network_manager": "flatdhcp",
            "flat_network_bridge": "br100",
            "host": "bench-host",
            "quota_fixed_ips": -1,
        }
    )
    return Ctx(create_engine(url), cfg)


def _writer(url: str, uuids: list[str], host: str, batch: int, start: Any, middle: Any, out: Any) -> None:
    from novanet.domain.modes import FLATDHCP
    from novanet.service import instances as I

    ctx = _ctx(url)
    done: list[float] = []
    start.wait()
    cpu0 = time.process_time()
    chunks = [uuids[i : i + batch] for i in range(0, len(uuids), batch)]
    for chunk in chunks:
        if batch == 1:
            I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(chunk[0], "bench", host))
        else:
            I.allocate_many(ctx, FLATDHCP, [I.AllocateRequest(u, "bench", host) for u in chunk])
        done += [time.time()] * len(chunk)
    cpu_alloc = time.process_time() - cpu0
    middle.wait()
    t = time.time()
    cpu1 = time.process_time()
    for chunk in chunks:
        if batch == 1:
            I.deallocate_for_instance(ctx, chunk[0])
        else:
            I.deallocate_many(ctx, chunk)
    cpu_dealloc = time.process_time() - cpu1
    out.put({"done": done, "dealloc": (t, time.time()), "cpu_alloc": cpu_alloc, "cpu_dealloc": cpu_dealloc})
    ctx.engine.dispose()


def _count(url: str) -> int:
    import sqlalchemy as sa

    ctx = _ctx(url)
    with ctx.engine.connect() as conn:
        n = int(
            conn.execute(
                sa.text("SELECT count(*) FROM fixed_ips WHERE instance_uuid IS NOT NULL")
            ).scalar_one()
        )
    ctx.engine.dispose()
    return n


def run_once(backend: str, url: str, commit: str, writers: int, batch: int, instances: int) -> Run:
    from novanet.db.migrate import sync
    from novanet.domain.modes import FLATDHCP
    from novanet.service import networks as N

    ctx = _ctx(url)
    sync(ctx.engine)
    N.create_networks(
        ctx, FLATDHCP, N.NetworkRequest("bench", FIXED_RANGE, num_networks=1, network_size=NETWORK_SIZE)
    )
    if backend == "postgresql":
        _freeze_planner_stats(ctx.engine, "analyzed")
    ctx.engine.dispose()
    if backend == "postgresql" and commit == "off":
        url = url + ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"
    per = instances // writers
    mpc = mp.get_context("fork")
    start, middle, out = mpc.Barrier(writers + 1), mpc.Barrier(writers + 1), mpc.Queue()
    procs = [
        mpc.Process(
            target=_writer,
            # each writer its own host: the scope of its changes is its own
            args=(url, [str(uuid.uuid4()) for _ in range(per)], f"bench-{w}", batch, start, middle, out),
        )
        for w in range(writers)
    ]
    load_before = os.getloadavg()[0]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.time()
    middle.wait()
    t_mid = time.time()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a writer failed with exit code {p.exitcode}")
    alloc_end = max(max(r["done"]) for r in results)
    dealloc_start = min(r["dealloc"][0] for r in results)
    dealloc_end = max(r["dealloc"][1] for r in results)
    held = _count(url)
    if held != 0:
        raise RuntimeError(f"{held} addresses held after deallocating everything")
    done = sorted(x for r in results for x in r["done"])
    total = per * writers
    w = min(WINDOW, total // 2)
    first = w / (done[w - 1] - t0)
    last = w / (done[-1] - done[-w - 1])
    del t_mid
    return Run(
        backend=backend,
        commit=commit,
        writers=writers,
        batch=batch,
        instances=total,
        alloc_per_s=total / (alloc_end - t0),
        dealloc_per_s=total / (dealloc_end - dealloc_start),
        first_window_per_s=first,
        last_window_per_s=last,
        client_cpu_ms=1000 * sum(r["cpu_alloc"] for r in results) / total,
        client_cpu_dealloc_ms=1000 * sum(r["cpu_dealloc"] for r in results) / total,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--instances", type=int, default=8000)
    ap.add_argument("--writers", default="1,8", help="comma-separated numbers of writers (default 1,8)")
    ap.add_argument("--batch", default="1", help="comma-separated instances per transaction (default 1)")
    ap.add_argument("--pg-commit", choices=("on", "off", "both"), default="both")
    ap.add_argument("--pg-url", default=os.environ.get("NOVANET_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    writers = [int(x) for x in args.writers.split(",")]
    batches = [int(x) for x in args.batch.split(",")]
    if min(batches) < 1 or min(writers) < 1:
        ap.error("--writers and --batch take positive numbers")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    runs: list[Run] = []
    for backend in backends:
        commits = (
            ["on"]
            if backend == "sqlite"
            else (["on", "off"] if args.pg_commit == "both" else [args.pg_commit])
        )
        for commit in commits:
            for w, b in [(w, b) for w in writers for b in batches]:
                db = sqlite_database() if backend == "sqlite" else postgres_database(args.pg_url)
                with db as url:
                    r = run_once(backend, url, commit, w, b, args.instances)
                runs.append(r)
                print(
                    f"{backend:10} commit={commit:3} writers={w} batch={b}: alloc {r.alloc_per_s:7.0f}/s"
                    f" (first {r.first_window_per_s:.0f}/s, last {r.last_window_per_s:.0f}/s),"
                    f" dealloc {r.dealloc_per_s:7.0f}/s; load {r.load_before:.1f} -> {r.load_after:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
    if args.json:
        print(json.dumps([asdict(r) for r in runs]))
    else:
        head = ("backend", "commit", "writers", "batch", "alloc/s", "first/s", "last/s", "dealloc/s",
                "cpu ms", "dcpu ms", "load")  # fmt: skip
        print("{:10} {:6} {:>7} {:>5} {:>8} {:>8} {:>8} {:>9} {:>6} {:>7} {}".format(*head))
        for r in runs:
            print(
                f"{r.backend:10} {r.commit:6} {r.writers:7d} {r.batch:5d} {r.alloc_per_s:8.0f}"
                f" {r.first_window_per_s:8.0f} {r.last_window_per_s:8.0f} {r.dealloc_per_s:9.0f}"
                f" {r.client_cpu_ms:6.2f} {r.client_cpu_dealloc_ms:7.2f}"
                f" {r.load_before:.1f}->{r.load_after:.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
