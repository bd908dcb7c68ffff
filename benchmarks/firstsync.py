"""The agent's first complete sync of a big host: N floating IPs and N VIFs on one host.

    sudo .venv/bin/python benchmarks/firstsync.py                 # N = 10,000, SQLite
    sudo .venv/bin/python benchmarks/firstsync.py --backend postgresql --n 10000
    sudo .venv/bin/python benchmarks/firstsync.py --json

A database (SQLite file, or a throw-away PostgreSQL database next to ``--pg-url``) gets
one single-host FlatDHCP network with host h1, N instances on h1 (one VIF and one fixed IP
each) and N floating IPs associated with them, written in bulk (the setup is not what is
measured). Then, in a network namespace this script creates (``nvb-fs-<pid>``) with a
veth ``pub0``, the real agent (pyroute2 links, ``nft`` transactions, dnsmasq) runs its
first full sync: DB read, bridge, nftables, N floating IPs made local (one local route
each through pub0), dnsmasq with N reservations.
The time of that sync is reported with a breakdown by phase, then a second full sync (on
a converged host), then `agent check` (drift against the kernel; must be clean).

Everything is removed at the end: dnsmasq (by its pid), the namespace, the files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

HOST = "h1"
DEFAULT_PG = "postgresql+psycopg://novanet:novanet@127.0.0.1:5432/novanet"


def setup_db(url: str, n: int) -> None:
    import sqlalchemy as sa

    from novanet import config as C
    from novanet.db.engine import create_engine
    from novanet.db.migrate import sync
    from novanet.db.schema import fixed_ips, floating_ips, instances, networks, virtual_interfaces
    from novanet.domain.mac import random_mac
    from novanet.domain.modes import FLATDHCP
    from novanet.service import floating as F
    from novanet.service import networks as N
    from novanet.service.context import Ctx

    engine = create_engine(url)
    sync(engine)
    size = 1 << (max(n + 16, 256) - 1).bit_length()
    prefix = 32 - size.bit_length() + 1
    cfg = C.load(overrides={"network_manager": "flatdhcp", "public_interface": "pub0", "my_ip": "192.0.2.1"})
    ctx = Ctx(engine, cfg)
    [net] = N.create_networks(
        ctx,
        FLATDHCP,
        N.NetworkRequest(
            label="big", fixed_range_v4=f"10.64.0.0/{prefix}", bridge="br100", network_size=size
        ),
    )
    pool = IPv4Network(f"198.18.0.0/{prefix}")
    F.create_pool(ctx, str(pool), interface="pub0")
    with engine.begin() as conn:
        conn.execute(networks.update().where(networks.c.id == net.id).values(host=HOST))
        free = conn.execute(
            sa.select(fixed_ips.c.id, fixed_ips.c.address)
            .where(fixed_ips.c.network_id == net.id, fixed_ips.c.reserved.is_(False))
            .order_by(fixed_ips.c.id)
            .limit(n)
        ).all()
        fips = conn.execute(sa.select(floating_ips.c.id).order_by(floating_ips.c.id).limit(n)).scalars().all()
        insts = [str(uuid.uuid4()) for _ in range(n)]
        conn.execute(
            instances.insert(),
            [
                {"uuid": u, "project_id": "p1", "host": HOST, "hostname": f"vm{i}"}
                for i, u in enumerate(insts)
            ],
        )
        macs: set[str] = set()
        while len(macs) < n:
            macs.add(random_mac())
        conn.execute(
            virtual_interfaces.insert(),
            [
                {"uuid": str(uuid.uuid4()), "address": m, "network_id": net.id, "instance_uuid": u}
                for m, u in zip(sorted(macs), insts, strict=True)
            ],
        )
        vif_ids = dict(
            conn.execute(sa.select(virtual_interfaces.c.instance_uuid, virtual_interfaces.c.id)).all()
        )
        conn.execute(
            fixed_ips.update()
            .where(fixed_ips.c.id == sa.bindparam("fid"))
            .values(
                instance_uuid=sa.bindparam("inst"),
                virtual_interface_id=sa.bindparam("vif"),
                allocated=True,
            ),
            [{"fid": f.id, "inst": u, "vif": vif_ids[u]} for f, u in zip(free, insts, strict=True)],
        )
        conn.execute(
            floating_ips.update()
            .where(floating_ips.c.id == sa.bindparam("flid"))
            .values(project_id="p1", fixed_ip_id=sa.bindparam("fid"), host=HOST),
            [{"flid": fl, "fid": f.id} for fl, f in zip(fips, free, strict=True)],
        )
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    engine.dispose()


def _timed(
    phases: dict[str, float], name: str, fn: Callable[..., Any]
) -> Callable[..., Any]:  # wraps fn, adding its time to phases[name]
    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

    return wrapper


def inner(url: str, state: str) -> dict[str, Any]:
    """In the namespace: the agent's first full sync, timed by phase."""
    from novanet import config as C
    from novanet.agent import loop
    from novanet.agent.loop import Agent, Realizers
    from novanet.db.engine import create_engine
    from novanet.host.dnsmasq.process import SubprocessRunner
    from novanet.host.dnsmasq.realizer import DnsmasqManager
    from novanet.host.netlink import realizer as netlink
    from novanet.host.netlink.pyroute import PyrouteLinks
    from novanet.host.nft.backend import RealNft
    from novanet.host.owned import OwnedBridges
    from novanet.service.context import Ctx

    subprocess.run(["ip", "link", "add", "pub0", "type", "veth", "peer", "name", "pub0p"], check=True)
    subprocess.run(["ip", "link", "set", "pub0", "up"], check=True)
    cfg = C.load(
        overrides={
            "network_manager": "flatdhcp",
            "public_interface": "pub0",
            "my_ip": "192.0.2.1",
            "host": HOST,
            "metadata_host": "",
            "state_path": state,
            "connection": url,
        }
    )
    ctx = Ctx(create_engine(url), cfg)
    dhcp = DnsmasqManager(cfg.effective_networks_path, HOST, ["/bin/true"], SubprocessRunner())
    realizers = Realizers(
        links=PyrouteLinks(),
        nft=RealNft(),
        dhcp=dhcp,
        forwarding=lambda: None,  # the namespace's own sysctl; not part of the measure
        owned=OwnedBridges(Path(state) / "bridges.json"),
    )
    agent = Agent(ctx, HOST, realizers)
    phases: dict[str, float] = {}
    agent._read_full = _timed(phases, "database read", agent._read_full)  # type: ignore[method-assign]
    loop.desired_state = _timed(phases, "desired state", loop.desired_state)
    realizers.nft.apply = _timed(phases, "nftables transaction", realizers.nft.apply)  # type: ignore[method-assign]
    agent._bind_floating = _timed(phases, "floating IPs (local routes, pub0)", agent._bind_floating)  # type: ignore[method-assign]
    dhcp.sync = _timed(phases, "dnsmasq (hosts file, start)", dhcp.sync)  # type: ignore[method-assign]
    netlink.ensure_bridges = _timed(phases, "bridges", netlink.ensure_bridges)
    agent._with_foreign = _timed(phases, "link listing (foreign ports)", agent._with_foreign)  # type: ignore[method-assign]
    agent._attach_ports = _timed(phases, "instance ports", agent._attach_ports)  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        state_ = agent.full_sync()
        out["first_full_sync_s"] = time.perf_counter() - t
        out["phases_s"] = dict(phases)
        out["floating_ips"] = len(state_.nat.floating) if state_.nat else 0
        out["vif_filters"] = len(state_.vifs)
        out["dhcp_hosts"] = sum(len(d.hosts) for d in state_.dhcp)
        t = time.perf_counter()
        agent.full_sync()
        out["second_full_sync_s"] = time.perf_counter() - t
        t = time.perf_counter()
        problems = agent.check()
        out["check_s"] = time.perf_counter() - t
        out["check_problems"] = problems[:5]
        nat = subprocess.run(
            ["nft", "-j", "list", "map", "ip", "novanet", "floating-dnat"], capture_output=True, text=True
        )
        out["kernel_dnat_elements"] = len(json.loads(nat.stdout)["nftables"][1]["map"].get("elem", []))
        addrs = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "pub0"], capture_output=True, text=True
        )
        out["kernel_pub0_32s"] = sum(1 for line in addrs.stdout.splitlines() if "/32" in line)
        routes = subprocess.run(
            ["ip", "-4", "route", "show", "table", "local", "proto", "78", "type", "local", "dev", "pub0"],
            capture_output=True,
            text=True,
        )
        out["kernel_pub0_local_routes"] = len(routes.stdout.splitlines())
    finally:
        for uuid_ in dhcp.running():
            dhcp.stop(uuid_)
        ctx.engine.dispose()
    return out


def _end_ours(root: Path) -> None:
    """SIGTERM the processes this run started (dnsmasq and its helper): those whose command
    line names our own temporary directory."""
    import signal

    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(root) + "/" in cmd and "dnsmasq" in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(d.name), signal.SIGTERM)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("NOVANET_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--state-dir",
        default="/dev/shm",
        help="where the agent's state (dnsmasq files) lives, as its state_path would"
        " (default /dev/shm, a tmpfs)",
    )
    ap.add_argument("--inner", nargs=3, metavar=("URL", "STATE", "NS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        url, state, ns = args.inner
        # into the namespace (with the database port forwarded from its loopback), as
        # cloud.py does: the server's 127.0.0.1 is not the namespace's
        sys.path.insert(0, str(Path(__file__).parent))
        from cloud import _enter

        _enter(ns, url)
        print(json.dumps(inner(url, state)))
        return 0
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    root = Path(tempfile.mkdtemp(prefix="novanet-fs-", dir=args.state_dir))
    root.chmod(0o755)
    ns = f"nvb-fs-{os.getpid()}"
    admin = None
    dbname = None
    if args.backend == "sqlite":
        url = f"sqlite:///{root}/novanet.sqlite"
    else:
        base = make_url(args.pg_url)
        dbname = f"novanet_bench_{secrets.token_hex(6)}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
        url = base.set(database=dbname).render_as_string(hide_password=False)
    try:
        t = time.perf_counter()
        setup_db(url, args.n)
        setup_s = time.perf_counter() - t
        subprocess.run(["ip", "netns", "add", ns], check=True)
        res = subprocess.run(
            [sys.executable, __file__, "--inner", url, str(root / "state"), ns],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            return 2
        out = json.loads(res.stdout.strip().splitlines()[-1])
        loadavg = Path("/proc/loadavg").read_text().strip()
        out.update(
            backend=args.backend, n=args.n, db_setup_s=setup_s, load=os.getloadavg()[0], loadavg=loadavg
        )
        if args.json:
            print(json.dumps(out))
        else:
            print(f"first complete sync, {args.n} floating IPs + {args.n} VIFs on one host ({args.backend})")
            print(f"  database setup (bulk, not measured)    {setup_s:8.2f} s")
            print(f"  first full sync                        {out['first_full_sync_s']:8.2f} s")
            for k, v in sorted(out["phases_s"].items(), key=lambda kv: -kv[1]):
                print(f"    {k:<37}{v:8.3f} s")
            print(f"  second full sync (converged host)      {out['second_full_sync_s']:8.2f} s")
            print(f"  agent check                            {out['check_s']:8.2f} s")
            print(f"    problems: {out['check_problems'] or 'none'}")
            print(
                f"  in the kernel: {out['kernel_dnat_elements']} floating-dnat elements,"
                f" {out['kernel_pub0_local_routes']} local routes and {out['kernel_pub0_32s']} /32 addresses"
                f" on pub0; {out['dhcp_hosts']} DHCP reservations"
            )
            met = "met" if out["first_full_sync_s"] < 2 else "missed"
            print(f"  target < 2 s: {met}; state in {args.state_dir}; /proc/loadavg {loadavg}")
        return 0
    finally:
        _end_ours(root)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
