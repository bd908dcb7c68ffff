"""The API end to end: two `novanet api` processes (one with two workers) on one
PostgreSQL database, three hosts in namespaces (h1, h2 run `novanet agent`, h3 runs
`novanet serve`: API and agent in one process), FlatDHCP multi-host.

- 200 instances allocated concurrently through both APIs (16 clients): 200 distinct
  addresses, every one allocated in the database to its instance.
- Leases: every one of the 200 instances is really plugged on its host (`novanet vif
  plug`, its own namespace) and runs a DHCP client (busybox udhcpc); each gets exactly
  its allocated address from its own host's dnsmasq and every lease reaches the database
  (through the lease-event spool; dnsmasq's log is printed if this fails).
- Floating IPs allocated and associated through the Compute API by the project's member
  token land in the right host's kernel: `nft -j list` of each host's floating-dnat map.
- `novanet service list` shows the three hosts up, h3 as serve.

The API processes listen on loopback only; all other traffic stays in the namespaces.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hostlab import NOVANET, PYTHON, Lab, eventually
from nslab import Netns, World
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

pytestmark = [pytest.mark.netns, pytest.mark.e2e]

HOSTS = ("h1", "h2", "h3")
PUBLIC = {"h1": "203.0.113.1", "h2": "203.0.113.2", "h3": "203.0.113.3"}
FLOATING_RANGE = "203.0.113.32/28"
INSTANCES = 200


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A throw-away PostgreSQL database on the test server."""
    base = make_url(pg_server)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"novanet_t_{secrets.token_hex(8)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class PgRelay:
    """A Unix socket that forwards to the PostgreSQL server on 127.0.0.1.

    The agents run in namespaces that cannot reach the root namespace's loopback, but a
    Unix socket is a file, seen from every namespace; the server still sees a TCP client
    on 127.0.0.1 and authenticates it by password as usual.
    """

    def __init__(self, directory: Path, target: tuple[str, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        self.path = directory / f".s.PGSQL.{target[1]}"
        self.dir, self.target = directory, target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.path.chmod(0o777)  # dnsmasq's lease script runs unprivileged
        self.server.listen(64)
        self.closed = threading.Event()
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                if self.closed.is_set():
                    return
                time.sleep(0.05)  # e.g. out of descriptors for a moment: keep serving
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self.lock:
                self.conns.append(pair)
            done = threading.Semaphore(0)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, pair, done), daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket],
        done: threading.Semaphore,
    ) -> None:  # fmt: skip
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        # the second direction to end closes both sockets: hundreds of short connections
        # (one per lease event and CLI call) must not exhaust the test's descriptors
        if done.acquire(blocking=False):
            with self.lock:
                if pair in self.conns:
                    self.conns.remove(pair)
            for s in pair:
                s.close()
        else:
            done.release()

    def url(self, db_url: str) -> str:
        """``db_url`` through this relay."""
        u = make_url(db_url)
        return u.set(
            host=None, port=None, query={"host": str(self.dir), "port": str(self.target[1])}
        ).render_as_string(hide_password=False)

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(timeout=10)
        with self.lock:
            pairs, self.conns = self.conns, []
        for pair in pairs:
            for c in pair:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json(ns: Netns, *argv: str) -> Any:
    out = ns.run(*argv, check=False)
    return json.loads(out) if out.strip() else []


def _nft_map(ns: Netns, name: str) -> dict[str, str]:
    out = _json(ns, "nft", "-j", "list", "table", "ip", "novanet")
    for obj in out.get("nftables", []) if isinstance(out, dict) else []:
        m = obj.get("map")
        if m and m.get("name") == name:
            return {str(k): str(v) for k, v in m.get("elem", [])}
    return {}


def _ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"API process exited with {proc.returncode}"
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"API at {base} not ready")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _fixed(info: list[dict[str, Any]]) -> str:
    return str(info[0]["network"]["subnets"][0]["ips"][0]["address"])


def test_two_apis_three_hosts_postgres(lab: Lab, world: World, pg_url: str) -> None:
    u = make_url(pg_url)
    relay = PgRelay(lab.root / "pg", (u.host or "127.0.0.1", u.port or 5432))
    try:
        _run(lab, world, relay.url(pg_url))
    finally:
        relay.close()


def _run(lab: Lab, world: World, pg_url: str) -> None:
    lab.db_url = pg_url
    outside, under = world.ns("out"), world.ns("und")
    hosts = {name: world.ns(name) for name in HOSTS}
    for br, ns in (("obr", outside), ("ubr", under)):
        ns.run("ip", "link", "add", br, "type", "bridge")
        ns.run("ip", "link", "set", br, "up")
    for name, ns in hosts.items():
        world.veth(ns, "pub0", outside, f"o-{name}")
        outside.run("ip", "link", "set", f"o-{name}", "master", "obr")
        ns.run("ip", "addr", "add", f"{PUBLIC[name]}/24", "dev", "pub0")
        world.veth(ns, "und0", under, f"u-{name}")
        under.run("ip", "link", "set", f"u-{name}", "master", "ubr")
    # dnsmasq logs to the lab (printed if the test fails): its DHCP exchanges and what
    # its lease script said
    dlog = lab.root / "dnsmasq-logs"
    dlog.mkdir(mode=0o777)
    dlog.chmod(0o777)  # dnsmasq writes after dropping privileges
    for name in HOSTS:
        (lab.root / f"dnsmasq-{name}.conf").write_text(f"log-facility={dlog}/{name}.log\nlog-dhcp\n")
    conf = {
        name: lab.config(
            name,
            host=name,
            dnsmasq_config_file=str(lab.root / f"dnsmasq-{name}.conf"),
            network_manager="flatdhcp",
            multi_host="True",
            flat_network_bridge="br100",
            flat_interface="und0",
            public_interface="pub0",
            my_ip=PUBLIC[name],
            force_dhcp_release="True",
            metadata_host="",
            quota_floating_ips="-1",
            report_interval="1",
            # udhcpc -q takes a lease and quits without renewing it: with the default 120 s
            # lease, the first leases expire (dnsmasq's `del` clears the flag, as it should)
            # before the last of 200 are taken
            dhcp_lease_time="3600",
        )
        for name in HOSTS
    }
    c1 = conf["h1"]
    lab.cli(c1, "db", "sync")
    lab.cli(c1, "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/22",
            "--network-size", "1024")  # fmt: skip
    lab.cli(c1, "floating", "create", "--ip-range", FLOATING_RANGE, "--interface", "pub0")
    service = lab.cli(c1, "token", "create", "--project", "compute", "--service").strip()
    member = lab.cli(c1, "token", "create", "--project", "p1", "--user", "alice").strip()

    # h1, h2: agents; h3: `novanet serve` (API + agent) inside its namespace
    for name in ("h1", "h2"):
        lab.start_agent(hosts[name], conf[name], name)
    serve_port = _free_port()
    with open(lab.root / "serve-h3.log", "ab") as log:
        serve = hosts["h3"].popen(
            NOVANET, "--config-file", str(conf["h3"]), "serve", "--host", "h3", "--port", str(serve_port),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    lab.helpers.append(serve)  # type: ignore[arg-type]
    apis: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for extra in ([], ["--workers", "2"]):
            port = _free_port()
            with open(lab.root / f"api-{port}.log", "ab") as log:
                proc = subprocess.Popen(
                    [NOVANET, "--config-file", str(c1), "api", "--port", str(port), *extra],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            apis.append(proc)
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, apis, strict=True):
            _ready(base, proc)

        # --- 200 instances at once through both APIs --------------------------------
        uuids = [f"{i:08x}-0000-4000-8000-{secrets.token_hex(6)}" for i in range(INSTANCES)]
        clients = [httpx.Client(base_url=b, headers={"X-Auth-Token": service}, timeout=60) for b in bases]

        def allocate(i: int) -> tuple[str, str, str]:
            host = HOSTS[i % 3]
            body = {"uuid": uuids[i], "project_id": "p1", "host": host}
            r = clients[i % 2].post("/v1/instances", json=body)
            assert r.status_code == 200, r.text
            return uuids[i], host, _fixed(r.json())

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(allocate, range(INSTANCES)))
        for c in clients:
            c.close()
        addresses = [a for _, _, a in got]
        assert len(set(addresses)) == INSTANCES, "duplicate fixed IPs"
        rows = {r["address"]: r for r in lab.cli_json(c1, "fixed", "list")}
        assert all(rows[a]["instance_uuid"] == u and rows[a]["allocated"] for u, _, a in got)
        assert sum(1 for r in rows.values() if r["instance_uuid"]) == INSTANCES

        # --- leases: every instance plugged on its host, each with a real DHCP client ---
        eventually(
            lambda: all(_json(hosts[n], "ip", "-j", "link", "show", "dev", "br100") for n in HOSTS),
            60,
            what="br100 on every host",
        )
        guests = {uid: (host, addr, world.ns(f"v{i}")) for i, (uid, host, addr) in enumerate(got)}

        def plug_and_lease(uid: str) -> tuple[str, str | None]:
            host, addr, vm = guests[uid]
            lab.cli(conf[host], "vif", "plug", uid, "--netns", vm.name, ns=hosts[host])
            lease = None
            deadline = time.monotonic() + 120
            while lease != addr and time.monotonic() < deadline:
                lease = lab.dhcp(vm, tries=5)
            return addr, lease

        with ThreadPoolExecutor(8) as pool:
            leases = list(pool.map(plug_and_lease, guests))
        wrong = [(addr, lease) for addr, lease in leases if lease != addr]
        assert not wrong, f"{len(wrong)} of {INSTANCES} instances without their address: {wrong[:5]}"

        # each host's dnsmasq spools its ~67 add events; its drainers apply them in batches
        db = sa.create_engine(pg_url, poolclass=NullPool)
        missing: set[str] = set(addresses)
        try:
            deadline = time.monotonic() + 120
            while missing and time.monotonic() < deadline:
                with db.connect() as c:
                    leased = set(c.execute(sa.text("SELECT address FROM fixed_ips WHERE leased")).scalars())
                missing -= leased
                if missing:
                    time.sleep(1)
        finally:
            db.dispose()
        assert not missing, f"{len(missing)} of {INSTANCES} leases not in the database: {sorted(missing)[:5]}"
        vms = {name: next((u, a, guests[u][2]) for u, h, a in got if h == name) for name in HOSTS}

        # --- floating IPs through the Compute API, NATed by the right host ------------
        m = httpx.Client(headers={"X-Auth-Token": member}, timeout=30)
        expected: dict[str, dict[str, str]] = {n: {} for n in HOSTS}
        for i, name in enumerate(HOSTS):
            base = bases[i % 2]
            uid, addr, _vm = vms[name]
            fip = m.post(f"{base}/v2/p1/os-floating-ips", json={"pool": "nova"}).json()["floating_ip"]["ip"]
            r = m.post(f"{base}/v2.1/p1/servers/{uid}/action", json={"addFloatingIp": {"address": fip}})
            assert r.status_code == 202, r.text
            expected[name][fip] = addr
        m.close()
        for name, ns in hosts.items():
            eventually(lambda ns=ns, name=name: _nft_map(ns, "floating-dnat") == expected[name], 60,
                       what=f"{name}'s floating-dnat map")  # fmt: skip

        # --- services: three hosts up, h3 as serve; h3's own API answers in h3 -------
        services = {s["host"]: s for s in lab.cli_json(c1, "service", "list")}
        assert {h: (s["role"], s["state"]) for h, s in services.items()} == {
            "h1": ("agent", "up"), "h2": ("agent", "up"), "h3": ("serve", "up")
        }  # fmt: skip
        code = (
            "import httpx,sys\n"
            f"r=httpx.get('http://127.0.0.1:{serve_port}/v2/p1/os-floating-ips',"
            f"headers={{'X-Auth-Token':{member!r}}})\n"
            "print(len(r.json()['floating_ips']))\n"
        )
        assert hosts["h3"].run(PYTHON, "-c", code, timeout=60).strip() == "3"
    except BaseException:
        for f in sorted(lab.root.glob("*.log")):
            print(f"--- {f.name}\n{f.read_text()[-3000:]}")
        for f in sorted(lab.root.rglob("lease-events.log")) + sorted(dlog.glob("*.log")):
            print(f"--- {f}\n{f.read_text()[-6000:]}")
        for d in sorted(lab.root.rglob("lease-events")):
            print(f"--- {d}: {len([n for n in d.iterdir() if not n.name.startswith('.')])} events waiting")
        raise
    finally:
        for proc in apis:
            _stop(proc)
        _stop(serve)
    assert all(p.returncode == 0 for p in apis), [p.returncode for p in apis]
    assert serve.returncode == 0
