"""A simulated cloud on PostgreSQL: what host h1 pays as the cloud grows around it.

    sudo .venv/bin/python benchmarks/cloud.py                       # 10, 100, 1000 hosts
    sudo .venv/bin/python benchmarks/cloud.py --sizes 10,100 --json

One throw-away PostgreSQL database (next to ``--pg-url``) holds a cloud that grows from 10
to 100 to 1,000 hosts of 100 instances each (1,000 / 10,000 / 100,000 instances): one
multi-host FlatDHCP network (sized for the largest cloud) carries 90 of each host's
instances, with each host's own gateway address; one single-host VLAN network per group
of 10 hosts (its DHCP server: the group's first host) carries the other 10; 10,000
floating IPs are spread over the hosts' flat instances. All hosts but h1 are rows only.

At each size, host h1's real agent (pyroute2 links, ``nft``, dnsmasq) runs in a network
namespace of its own made fresh (a veth ``pub0``), in a process of its own, and reports:

- its first full sync (time, rows read);
- a change on h1: an instance allocated on h1 until its elements are in the kernel (``nft
  get element`` of its address in vif-ips) and its DHCP reservation is written; a floating
  IP associated with an h1 instance until it is in floating-dnat;
- a change on another host (an instance allocated on a host outside h1's group, and a
  floating IP associated there): the rows h1 read and the time it spent, its snapshot
  reads (target: zero);
- the database work per change: statements and rows of the writer's transaction plus h1's.

Rows and statements are counted on each engine (SQLAlchemy cursor events): the numbers
are what each process asked of the database. The partial syncs are driven one per change
(the agent's loop would do the same after its NOTIFY).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_PG = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"
PER_HOST = 100
FLAT_PER_HOST = 90
GROUP = 10  # hosts per VLAN network
FLOATING = 10_000
MAX_HOSTS = 1000
SAMPLES = 11


def _cfg(url: str, **extra: str) -> Any:
    from novanet import config as C

    return C.load(
        overrides={
            "connection": url,
            "network_manager": "flatdhcp",
            "flat_network_bridge": "br100",
            "public_interface": "pub0",
            "my_ip": "192.0.2.1",
            "metadata_host": "",
            "quota_fixed_ips": "-1",
            "quota_floating_ips": "-1",
            **extra,
        }
    )


def _counting(engine: Any) -> dict[str, int]:
    import sqlalchemy as sa

    counts = {"statements": 0, "rows": 0}

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts["statements"] += 1
        if statement.lstrip().upper().startswith("SELECT") and cursor.rowcount and cursor.rowcount > 0:
            counts["rows"] += cursor.rowcount

    return counts


# --- the cloud, in rows -----------------------------------------------------------------


def create_base(url: str) -> None:
    from novanet.db.engine import create_engine
    from novanet.db.migrate import sync
    from novanet.domain.modes import FLATDHCP, VLAN
    from novanet.service import floating as F
    from novanet.service import networks as N
    from novanet.service.context import Ctx

    engine = create_engine(url)
    sync(engine)
    ctx = Ctx(engine, _cfg(url))
    N.create_networks(
        ctx,
        FLATDHCP,
        N.NetworkRequest(
            "flat", "10.128.0.0/15", num_networks=1, network_size=131072, multi_host=True, bridge="br100"
        ),
    )
    N.create_networks(
        ctx,
        VLAN,
        N.NetworkRequest(
            "vlan", "172.16.0.0/16", num_networks=MAX_HOSTS // GROUP, network_size=256, multi_host=False
        ),
    )
    F.create_pool(ctx, "198.18.0.0/18", interface="pub0")
    engine.dispose()


def grow(url: str, hosts_from: int, hosts_to: int) -> None:
    """Hosts h<from+1>..h<to> with their instances, VIFs, fixed IPs, gateway addresses and
    their share of the floating IPs, written in bulk with set-based SQL."""
    import sqlalchemy as sa

    from novanet.db.engine import create_engine

    engine = create_engine(url)
    lo, hi = hosts_from + 1, hosts_to
    first_i, last_i = (lo - 1) * PER_HOST + 1, hi * PER_HOST
    with engine.begin() as conn:
        flat = conn.execute(sa.text("SELECT id FROM networks WHERE manager = 'flatdhcp'")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO hosts (name, created_at) SELECT 'h' || k, now()"
                " FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) k"
                " ON CONFLICT DO NOTHING"
            ),
            {"lo": lo, "hi": hi},
        )
        # the VLAN network of each group: its DHCP server is the group's first host
        conn.execute(
            sa.text(
                "UPDATE networks n SET host = 'h' || (g.rn * :group + 1), project_id = 'p' || g.rn"
                " FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn FROM networks"
                "       WHERE manager = 'vlan') g"
                " WHERE n.id = g.id AND g.rn * :group + 1 BETWEEN :lo AND :hi"
            ),
            {"group": GROUP, "lo": lo, "hi": hi},
        )
        conn.execute(
            sa.text(
                "INSERT INTO instances (uuid, project_id, host, hostname, created_at)"
                " SELECT '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'),"
                "        'p' || ((i - 1) / :per / :group), 'h' || ((i - 1) / :per + 1), 'vm' || i, now()"
                " FROM generate_series(CAST(:a AS int), CAST(:b AS int)) i"
            ),
            {"a": first_i, "b": last_i, "per": PER_HOST, "group": GROUP},
        )
        conn.execute(
            sa.text(
                "INSERT INTO virtual_interfaces (uuid, address, network_id, instance_uuid, created_at)"
                " SELECT lpad(to_hex(i), 8, '0') || '-0000-4000-8000-100000000000',"
                "        'fa:16:3e:' || lpad(to_hex((i >> 16) & 255), 2, '0') || ':'"
                "        || lpad(to_hex((i >> 8) & 255), 2, '0') || ':' || lpad(to_hex(i & 255), 2, '0'),"
                "        CASE WHEN (i - 1) % :per < :flat THEN :flat_id ELSE"
                "          (SELECT id FROM networks WHERE manager = 'vlan' ORDER BY id"
                "           OFFSET (i - 1) / :per / :group LIMIT 1) END,"
                "        '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), now()"
                " FROM generate_series(CAST(:a AS int), CAST(:b AS int)) i"
            ),
            {
                "a": first_i,
                "b": last_i,
                "per": PER_HOST,
                "flat": FLAT_PER_HOST,
                "flat_id": flat,
                "group": GROUP,
            },
        )
        # fresh statistics for the set-based updates below (100,000 new rows at once
        # otherwise get a nested-loop plan that runs for minutes)
        conn.execute(sa.text("ANALYZE instances, virtual_interfaces, fixed_ips"))
        # each new VIF takes the next free address of its network
        conn.execute(
            sa.text(
                "UPDATE fixed_ips f SET instance_uuid = v.instance_uuid, virtual_interface_id = v.id,"
                " allocated = true"
                " FROM (SELECT id, instance_uuid, network_id,"
                "        row_number() OVER (PARTITION BY network_id ORDER BY id) AS rn"
                "       FROM virtual_interfaces v WHERE NOT EXISTS"
                "        (SELECT 1 FROM fixed_ips x WHERE x.virtual_interface_id = v.id)) v,"
                "      (SELECT id, network_id,"
                "        row_number() OVER (PARTITION BY network_id ORDER BY id) AS rn"
                "       FROM fixed_ips"
                "       WHERE instance_uuid IS NULL AND host IS NULL AND reserved = false) free"
                " WHERE free.network_id = v.network_id AND free.rn = v.rn AND f.id = free.id"
            )
        )
        # each new host's own gateway address on the flat network
        conn.execute(
            sa.text(
                "UPDATE fixed_ips f SET host = h.name FROM"
                " (SELECT 'h' || k AS name, row_number() OVER (ORDER BY k) AS rn"
                "  FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) k) h,"
                " (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM fixed_ips"
                "  WHERE network_id = :flat AND instance_uuid IS NULL AND host IS NULL"
                "   AND reserved = false) free"
                " WHERE free.rn = h.rn AND f.id = free.id"
            ),
            {"lo": lo, "hi": hi, "flat": flat},
        )
        # floating IPs: 10,000 over the hosts of the largest cloud, 10 per host
        per_host = FLOATING // MAX_HOSTS
        conn.execute(
            sa.text(
                "UPDATE floating_ips fl SET project_id = 'p0', host = t.host, fixed_ip_id = t.fid FROM"
                " (SELECT f.id AS fid, i.host, row_number() OVER (ORDER BY f.id) AS rn"
                "  FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid"
                "  WHERE f.network_id = :flat AND i.hostname IN"
                "   (SELECT 'vm' || ((k - 1) * :per + j)"
                "    FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) k,"
                "    generate_series(1, CAST(:fph AS int)) j)) t,"
                " (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM floating_ips"
                "  WHERE project_id IS NULL) free"
                " WHERE free.rn = t.rn AND fl.id = free.id"
            ),
            {"flat": flat, "per": PER_HOST, "lo": lo, "hi": hi, "fph": per_host},
        )
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    engine.dispose()


# --- h1's agent, in its namespace -------------------------------------------------------


def _enter(ns: str, url: str) -> None:
    """Move this process's main thread into ``ns`` (its kernel work and the processes it
    starts happen there), and forward the database's TCP port from the namespace's
    loopback to the server's: one thread that stayed in the first namespace connects out
    (namespaces belong to threads; a socket to the namespace of the thread that made it)."""
    import ctypes
    import socket
    import threading

    from sqlalchemy.engine import make_url

    u = make_url(url)
    target = (u.host or "127.0.0.1", int(u.port or 5432))
    handed: list[socket.socket] = []
    ready = threading.Event()

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def forward() -> None:
        ready.wait()
        listener = handed[0]
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(target)  # made by this thread: the first namespace
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=forward, daemon=True).start()
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), f"setns {ns}")
    os.close(fd)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(target)
    listener.listen(64)
    handed.append(listener)
    ready.set()


def inner(url: str, state: str, other_host: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from novanet.agent.loop import Agent, Realizers
    from novanet.db.engine import create_engine
    from novanet.db.schema import instances, networks
    from novanet.domain.modes import FLATDHCP
    from novanet.host.dnsmasq.process import SubprocessRunner
    from novanet.host.dnsmasq.realizer import DnsmasqManager
    from novanet.host.netlink.pyroute import PyrouteLinks
    from novanet.host.nft.backend import RealNft
    from novanet.host.owned import OwnedBridges
    from novanet.service import floating as F
    from novanet.service import instances as I
    from novanet.service.context import Ctx

    for cmd in (
        ["ip", "link", "add", "pub0", "type", "veth", "peer", "name", "pub0p"],
        ["ip", "link", "set", "pub0", "up"],
        ["ip", "link", "set", "lo", "up"],
    ):
        subprocess.run(cmd, check=True)
    agent_engine = create_engine(url)
    reads = _counting(agent_engine)
    cfg = _cfg(url, host="h1", state_path=state)
    ctx = Ctx(agent_engine, cfg)
    dhcp = DnsmasqManager(cfg.effective_networks_path, "h1", ["/bin/true"], SubprocessRunner())
    agent = Agent(
        ctx,
        "h1",
        Realizers(
            PyrouteLinks(),
            RealNft(),
            dhcp,
            forwarding=lambda: None,
            owned=OwnedBridges(Path(state) / "b.json"),
        ),
    )
    writer_engine = create_engine(url)
    writes = _counting(writer_engine)
    wctx = Ctx(writer_engine, _cfg(url))
    out: dict[str, Any] = {}

    def snapshot_reads() -> float:
        return float(agent.metrics.snapshot_reads._value.get())

    def kernel_has(setname: str, key: str) -> bool:
        """The kernel's own listing (``nft -j list``) of the set holds ``key``."""
        kind, family = ("map", "ip") if setname == "floating-dnat" else ("set", "bridge")
        res = subprocess.run(
            ["nft", "-j", "list", kind, family, "novanet", setname], capture_output=True, text=True
        )
        return res.returncode == 0 and f'"{key}"' in res.stdout

    try:
        r0 = dict(reads)
        t = time.perf_counter()
        state_ = agent.full_sync()
        out["full_sync_s"] = time.perf_counter() - t
        out["full_sync_rows"] = reads["rows"] - r0["rows"]
        out["full_sync_statements"] = reads["statements"] - r0["statements"]
        again = []
        for _ in range(3):  # on the converged host: the same reads, deltas of nothing
            t = time.perf_counter()
            agent.full_sync()
            again.append(time.perf_counter() - t)
        out["full_sync_again_s"] = statistics.median(again)
        out["h1_vifs"] = len(state_.vifs)
        out["h1_floating"] = len(state_.nat.floating) if state_.nat else 0
        out["h1_dhcp_hosts"] = sum(len(d.hosts) for d in state_.dhcp)
        with writer_engine.connect() as conn:
            flat_uuid = conn.execute(
                sa.select(networks.c.uuid).where(networks.c.manager == "flatdhcp")
            ).scalar_one()
            other_inst, other_project = conn.execute(
                sa.select(instances.c.uuid, instances.c.project_id)
                .where(instances.c.host == other_host)
                .limit(1)
            ).one()
            h1_inst = conn.execute(
                sa.select(instances.c.uuid).where(instances.c.host == "h1").limit(1)
            ).scalar_one()
        req_net = (I.RequestedNetwork(flat_uuid),)

        def measure(change: Any, check: Any) -> dict[str, float]:
            """One change by the writer, then h1's partial sync; times and counts."""
            r, w, s = dict(reads), dict(writes), snapshot_reads()
            t0 = time.perf_counter()
            key = change()
            t1 = time.perf_counter()
            agent.partial_sync()  # its nft transaction has committed when it returns
            t2 = time.perf_counter()
            ok = check(key) if check else True
            if not ok:
                applied = agent.applied
                known = applied is not None and any(key in v.addresses for v in applied.vifs)
                listing = subprocess.run(
                    ["nft", "-j", "list", "set", "bridge", "novanet", "vif-ips"],
                    capture_output=True,
                    text=True,
                )
                raise RuntimeError(
                    f"change {key} not in the kernel after h1's sync (in the agent's state: {known});"
                    f" {listing.stdout[-1500:]} {listing.stderr}"
                )
            return {
                "service_ms": (t1 - t0) * 1000,
                "h1_ms": (t2 - t1) * 1000,
                "total_ms": (t2 - t0) * 1000,
                "h1_rows": reads["rows"] - r["rows"],
                "h1_statements": reads["statements"] - r["statements"],
                "h1_snapshot_reads": snapshot_reads() - s,
                "writer_rows": writes["rows"] - w["rows"],
                "writer_statements": writes["statements"] - w["statements"],
            }

        made: list[str] = []
        taken: list[str] = []

        def alloc(host: str) -> Any:
            def do() -> str:
                u = str(uuid.uuid4())
                made.append(u)
                info = I.allocate_for_instance(
                    wctx, FLATDHCP, I.AllocateRequest(u, "p0", host, requested=req_net)
                )
                return str(info[0]["network"]["subnets"][0]["ips"][0]["address"])

            return do

        def assoc(inst: str, project: str = "p0") -> Any:
            def do() -> str:
                address = str(F.allocate(wctx, project)["address"])
                taken.append(address)
                F.associate(wctx, address, inst)
                return address

            return do

        agent.partial_sync()  # nothing pending
        runs: dict[str, list[dict[str, float]]] = {
            "allocate on h1": [
                measure(alloc("h1"), lambda a: kernel_has("vif-ips", a)) for _ in range(SAMPLES)
            ],
            "associate on h1": [
                measure(assoc(h1_inst), lambda a: kernel_has("floating-dnat", a)) for _ in range(SAMPLES)
            ],
            f"allocate on {other_host}": [measure(alloc(other_host), None) for _ in range(SAMPLES)],
            f"associate on {other_host}": [
                measure(assoc(other_inst, other_project), None) for _ in range(SAMPLES)
            ],
        }
        out["changes"] = {
            name: {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            for name, samples in runs.items()
        }
        out["other_snapshot_reads_total"] = sum(
            s["h1_snapshot_reads"] for name, samples in runs.items() if other_host in name for s in samples
        )
        problems = agent.check()
        out["check_problems"] = problems[:5]
        # the next size starts from the same share of h1
        for a in taken:
            F.release(wctx, a, disassociate=True)
        for u in made:
            I.deallocate_for_instance(wctx, u)
    finally:
        for u in dhcp.running():
            dhcp.stop(u)
        agent_engine.dispose()
        writer_engine.dispose()
    return out


def explain(url: str, host: str = "h1") -> list[str]:
    """EXPLAIN of every statement of ``host``'s scoped snapshot and change-log reads, on
    the cloud as it is now (each must be an index scan, none a scan of a whole table)."""
    import sqlalchemy as sa

    from novanet.agent import snapshot as snapmod
    from novanet.db.engine import create_engine

    engine = create_engine(url)
    seen: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _grab(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if not statement.startswith("EXPLAIN"):
            seen.append((statement, parameters))

    out: list[str] = []
    with engine.connect() as conn:
        snap = snapmod.read_snapshot(conn, host)
        low = snapmod.latest_change(conn) - 10
        seen.clear()
        snapmod.read_snapshot(conn, host)
        snapmod.scoped_changes_after(conn, low, host, snap.networks)
        grabbed = list(seen)
        for statement, params in grabbed:
            out.append("-- " + " ".join(statement.split()))
            plan = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars().all()
            out += [f"   {line}" for line in plan]
            if any("Seq Scan" in line for line in plan):
                # a table of a few pages is cheaper to read whole: the index that serves
                # the query as the table grows, shown with sequential scans disallowed
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars().all()
                conn.exec_driver_sql("RESET enable_seqscan")
                out.append("   with enable_seqscan = off:")
                out += [f"   {line}" for line in plan]
    engine.dispose()
    return out


def run_size(url: str, hosts: int, root: Path) -> dict[str, Any]:
    ns = f"nvb-cloud-{os.getpid()}-{hosts}"
    state = root / f"state-{hosts}"
    state.mkdir(mode=0o755)
    other = f"h{hosts // 2 + 1}" if hosts > GROUP else f"h{hosts}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        res = subprocess.run(
            [sys.executable, __file__, "--inner", url, str(state), other, ns],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-3000:])
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        out["hosts"], out["other_host"] = hosts, other
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--pg-url", default=os.environ.get("NOVANET_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--explain", action="store_true", help="print the plans of h1's reads at the largest size"
    )
    ap.add_argument("--inner", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        url, state, other, ns = args.inner
        _enter(ns, url)
        print(json.dumps(inner(url, state, other)))
        return 0
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    sizes = [int(s) for s in args.sizes.split(",")]
    base = make_url(args.pg_url)
    dbname = f"novanet_bench_{secrets.token_hex(6)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    url = base.set(database=dbname).render_as_string(hide_password=False)
    root = Path(tempfile.mkdtemp(prefix="novanet-cloud-", dir="/dev/shm"))
    root.chmod(0o755)
    results = []
    try:
        t = time.perf_counter()
        create_base(url)
        print(f"base networks and pool: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
        have = 0
        for hosts in sizes:
            t = time.perf_counter()
            grow(url, have, hosts)
            have = hosts
            print(
                f"cloud of {hosts} hosts in rows: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True
            )
            if args.explain and hosts == sizes[-1]:
                print("\n".join(explain(url)), flush=True)
            r = run_size(url, hosts, root)
            r["load"] = os.getloadavg()[0]
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()
    if args.json:
        print(json.dumps(results))
        return 0
    print(report(results))
    return 0


def report(results: list[dict[str, Any]]) -> str:
    lines = []
    head = ["hosts (instances)"] + [f"{r['hosts']} ({r['hosts'] * PER_HOST})" for r in results]
    rows: list[list[str]] = [head]
    rows.append(["h1 first full sync (s)"] + [f"{r['full_sync_s']:.2f}" for r in results])
    rows.append(["  rows read"] + [str(r["full_sync_rows"]) for r in results])
    rows.append(["h1 full sync again (s, median of 3)"] + [f"{r['full_sync_again_s']:.2f}" for r in results])
    for name in ("allocate on h1", "associate on h1"):
        rows.append(
            [f"{name}: until in kernel (ms)"] + [f"{r['changes'][name]['total_ms']:.0f}" for r in results]
        )
        rows.append(["  of which h1's sync (ms)"] + [f"{r['changes'][name]['h1_ms']:.0f}" for r in results])
    for kind in ("allocate", "associate"):
        key = [next(k for k in r["changes"] if k.startswith(kind) and not k.endswith("h1")) for r in results]
        rows.append(
            [f"{kind} elsewhere: h1 time (ms)"]
            + [f"{r['changes'][k]['h1_ms']:.1f}" for r, k in zip(results, key, strict=True)]
        )
        rows.append(
            ["  h1 rows read"]
            + [f"{r['changes'][k]['h1_rows']:.0f}" for r, k in zip(results, key, strict=True)]
        )
        rows.append(
            ["  h1 snapshot reads"]
            + [f"{r['changes'][k]['h1_snapshot_reads']:.0f}" for r, k in zip(results, key, strict=True)]
        )
        rows.append(
            ["  DB per change: statements / rows"]
            + [
                f"{r['changes'][k]['writer_statements'] + r['changes'][k]['h1_statements']:.0f}"
                f" / {r['changes'][k]['writer_rows'] + r['changes'][k]['h1_rows']:.0f}"
                for r, k in zip(results, key, strict=True)
            ]
        )
    rows.append(["load average"] + [f"{r['load']:.1f}" for r in results])
    width = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        lines.append("  ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(row)))
    if len(results) > 1:
        a, b = results[0], results[-1]

        def ratio(name: str) -> float:
            return float(b["changes"][name]["total_ms"] / a["changes"][name]["total_ms"])

        lines.append(
            f"h1 at {b['hosts']} / at {a['hosts']} hosts:"
            f" full sync x{b['full_sync_s'] / a['full_sync_s']:.2f},"
            f" allocate on h1 x{ratio('allocate on h1'):.2f}, associate on h1 x{ratio('associate on h1'):.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
