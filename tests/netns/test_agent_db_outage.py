"""PostgreSQL goes away under a running agent: the host keeps its data plane exactly as it
is (no flush: NAT, filters, dnsmasq and its leases stay), the CLI says so in one line, the
agent retries with backoff, and when the server is back it converges (`agent check` clean).

The database is a private PostgreSQL instance this test creates (initdb into a temporary
directory, its own port and unix socket, run as the postgres user) and stops and starts:
the shared server on 127.0.0.1:5432 is never touched. The agent reaches it through the
unix socket, which works from inside its network namespace.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostlab import NOVANET, Lab, eventually
from nslab import World

from novanet.db.engine import create_engine
from novanet.db.migrate import sync

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"
PORT = 55432


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert found, "PostgreSQL server binaries missing (scripts/setup.sh installs postgresql)"
    return Path(found[-1]).parent


@dataclass
class PrivatePg:
    root: Path
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://novanet@/novanet?host={self.root}/sock&port={PORT}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        opts = f"-c listen_addresses='' -c unix_socket_directories={self.root}/sock -p {PORT} -c fsync=off"
        self._ctl("-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def pg() -> Iterator[PrivatePg]:
    root = Path(tempfile.mkdtemp(prefix="novanet-pg-"))
    root.chmod(0o755)
    (root / "sock").mkdir()
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(root / "sock", "postgres", "postgres")
    server = PrivatePg(root, _pg_bin())
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(server.bin / "initdb"), "-D", str(root / "data"),
         "-U", "novanet", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server.start()
    try:
        subprocess.run(
            ["psql", "-h", f"{root}/sock", "-p", str(PORT), "-U", "novanet", "-d", "postgres",
             "-c", "CREATE DATABASE novanet"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield server
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(server.bin / "pg_ctl"), "-D", str(root / "data"),
             "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _cli_stderr(conf: Path, *args: str) -> tuple[int, str]:
    res = subprocess.run(
        [NOVANET, "--config-file", str(conf), *args], capture_output=True, text=True, timeout=60
    )
    return res.returncode, res.stderr


def test_the_data_plane_outlives_a_database_outage(lab: Lab, world: World, pg: PrivatePg) -> None:
    outside, host, vm1, vm2 = world.ns("out"), world.ns("host"), world.ns("vm1"), world.ns("vm2")
    vm3 = world.ns("vm3")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    lab.db_url = pg.url
    engine = create_engine(pg.url)
    sync(engine)
    engine.dispose()
    conf = lab.config(
        "net1",
        network_manager="flatdhcp",
        flat_network_bridge="br100",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        host="net1",
        network_host="net1",
        metadata_host="",
    )
    lab.cli(conf, "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/24")
    lab.cli(conf, "floating", "create", "--ip-range", "203.0.113.16/29", "--interface", "pub0")
    info = lab.cli_json(conf, "instance", "allocate", U1, "--project-id", "p1", "--host", "net1")
    address = info[0]["network"]["subnets"][0]["ips"][0]["address"]
    agent = lab.start_agent(host, conf, "net1")
    eventually(
        lambda: "10.0.0.1" in host.run("ip", "-j", "addr", "show", "br100", check=False), 30, what="gateway"
    )
    lab.cli(conf, "vif", "plug", U1, "--netns", vm1.name, ns=host)
    assert lab.dhcp(vm1) == address
    fip = lab.cli_json(conf, "floating", "allocate", "--project-id", "p1")["address"]
    lab.cli(conf, "floating", "associate", fip, "--instance", U1)
    inbound = lab.listen(vm1, 2222)
    eventually(lambda: lab.connect(outside, fip, 2222), 15, what="TCP to the floating IP")
    # an instance allocated and plugged before the outage that asks for its first lease
    # during it: dnsmasq answers from its reservation and the lease event waits on disk
    info3 = lab.cli_json(conf, "instance", "allocate", U3, "--project-id", "p1", "--host", "net1")
    address3 = info3[0]["network"]["subnets"][0]["ips"][0]["address"]
    eventually(
        lambda: any(info3[0]["address"] in f.read_text() for f in Path(lab.root).rglob("hosts.d/*")),
        30,
        what="the third instance's reservation",
    )
    lab.cli(conf, "vif", "plug", U3, "--netns", vm3.name, ns=host)
    ruleset = host.run("nft", "-j", "list", "table", "ip", "novanet")

    pg.stop()
    try:
        # the CLI: one line, non-zero
        code, err = _cli_stderr(conf, "network", "list")
        assert code != 0
        assert len(err.splitlines()) == 1 and "database unavailable: " in err, err
        # the agent notices (its next turn fails) and keeps going
        eventually(
            lambda: "database unavailable" in lab.agent_log("net1"), 30, what="the agent sees the outage"
        )
        time.sleep(3.0)  # a few of its retries
        assert agent.poll() is None, lab.agent_log("net1")[-2000:]
        # the data plane is exactly as it was: the same ruleset, NAT and DHCP work
        assert host.run("nft", "-j", "list", "table", "ip", "novanet") == ruleset
        assert lab.connect(outside, fip, 2222)
        assert inbound.read_text().split()[0] == OUTSIDE
        assert lab.dhcp(vm1) == address  # the instance asks again: the running dnsmasq answers
        assert lab.dhcp(vm3) == address3  # a first lease, taken while the database is away
        failures = lab.agent_log("net1").count("sync of net1 failed")
        assert 1 <= failures <= 8, f"{failures} failed syncs in a few seconds: no backoff?"
    finally:
        pg.start()

    # the lease taken during the outage reached the database once it was back
    def leased3() -> bool:
        rows = lab.cli_json(conf, "fixed", "list", "--host", "net1")
        return any(r["address"] == address3 and r["leased"] for r in rows)

    eventually(leased3, 30, what="the lease taken during the outage in the database")

    # back: the agent converges and takes new work
    lab.cli_json(conf, "instance", "allocate", U2, "--project-id", "p1", "--host", "net1")
    lab.cli(conf, "vif", "plug", U2, "--netns", vm2.name, ns=host)
    assert eventually(lambda: lab.dhcp(vm2, tries=3), 60, what="DHCP for an instance made after the outage")
    eventually(
        lambda: (
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.name,
                    NOVANET,
                    "--config-file",
                    str(conf),
                    "agent",
                    "check",
                    "--host",
                    "net1",
                ],
                capture_output=True,
                timeout=60,
            ).returncode
            == 0
        ),
        60,
        what="`agent check` clean",
    )
    assert lab.connect(outside, fip, 2222)
