"""A real dnsmasq per network, run by DnsmasqManager inside a host namespace, serving a
real DHCP client (busybox udhcpc) in an instance namespace, with lease events reaching a
real SQLite database through the dhcpbridge lease script.

The manager runs in a small driver process started with ``ip netns exec`` (namespaces
belong to processes, never to threads of the test process).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.domain.modes import FLATDHCP
from novanet.host.dnsmasq.process import is_our_dnsmasq, read_pid
from novanet.host.model import DhcpHost, DhcpServer
from novanet.service import fixed as X
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

if TYPE_CHECKING:
    from nslab import Netns, World

PY = sys.executable

# Runs in the host namespace: one manager operation per call, JSON in and out.
DRIVER = r"""
import dataclasses, json, sys
from novanet.host.dnsmasq.realizer import DnsmasqManager, DnsmasqOptions, SubprocessRunner
from novanet.host.model import DhcpHost, DhcpServer

req = json.load(sys.stdin)
servers = [
    DhcpServer(
        **{**s, "dns_servers": tuple(s["dns_servers"]), "hosts": tuple(DhcpHost(**h) for h in s["hosts"])}
    )
    for s in req["servers"]
]
opts = DnsmasqOptions(log_facility=req["log"], log_dhcp=True)
m = DnsmasqManager(req["networks_path"], req["host"], req["script"], SubprocessRunner(), opts)
out = {}
if req["op"] == "sync":
    out = dataclasses.asdict(m.sync(servers))
elif req["op"] == "release":
    m.release(*req["args"])
elif req["op"] == "check":
    out = {"drift": m.check(servers)}
out["running"] = m.running()
print(json.dumps(out))
"""

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "bound ip=$ip router=$router dns=$dns domain=$domain hostname=$hostname mtu=$mtu"
exit 0
"""


@dataclass
class Env:
    host: Netns
    vm: Netns
    stray: Netns
    bridge: str
    state: Path
    ctx: Ctx
    url: str
    net_uuid: str
    agent_host: str = "compute-1"

    @property
    def networks_path(self) -> Path:
        return self.state / "networks"

    @property
    def log(self) -> Path:
        return self.state / "dnsmasq.log"

    def drive(self, op: str, servers: list[DhcpServer], args: list[str] | None = None) -> dict[str, Any]:
        req = {
            "op": op,
            "servers": [asdict(s) for s in servers],
            "networks_path": str(self.networks_path),
            "host": self.agent_host,
            "script": [PY, "-m", "novanet.agent.dhcpbridge", "--db", self.url],
            "log": str(self.log),
            "args": args or [],
        }
        out: dict[str, Any] = json.loads(self.host.run(PY, "-c", DRIVER, input=json.dumps(req), timeout=90))
        return out

    def server(self, *hosts: DhcpHost) -> DhcpServer:
        return DhcpServer(
            network_uuid=self.net_uuid,
            label="private",
            bridge=self.bridge,
            listen_address="10.0.0.1",
            dhcp_start="10.0.0.2",
            netmask="255.255.255.0",
            router="10.0.0.1",
            dns_servers=("192.0.2.53",),
            domain="novalocal",
            lease_time=120,
            mtu=1400,
            hosts=hosts,
        )

    def dhcp(self, ns: Netns) -> str | None:
        """Ask for a lease from ``ns``'s eth0: the bound line, or None when udhcpc gave up
        (anything else, such as a vanished namespace, fails the test)."""
        script = self.state / "udhcpc.sh"
        res = subprocess.run(
            [
                *("ip", "netns", "exec", ns.name, "busybox", "udhcpc", "-i", "eth0", "-n", "-q"),
                *("-t", "5", "-T", "1", "-O", "mtu", "-s", str(script)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        bound = [ln for ln in res.stdout.splitlines() if ln.startswith("bound ")]
        if res.returncode == 0 and len(bound) == 1:
            return bound[0]
        assert res.returncode == 1 and "no lease, failing" in res.stderr, (res.returncode, res.stderr)
        return None

    def fixed(self, address: str) -> dict[str, Any]:
        (r,) = [r for r in X.list_fixed(self.ctx) if r["address"] == address]
        return r

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-30:])
        except OSError:
            return "(no dnsmasq log)"

    def our_pids(self) -> list[int]:
        pids = []
        for pid_file in self.networks_path.glob(f"{self.agent_host}/*/pid"):
            pid = read_pid(pid_file)
            if pid is None:
                continue
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if is_our_dnsmasq([a.decode() for a in raw.rstrip(b"\0").split(b"\0")], pid_file):
                pids.append(pid)
        return pids


def lease_scripts_running(url: str) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"novanet.agent.dhcpbridge" in cmd and url.encode() in cmd:
            return True
    return False


def alive(pid: int) -> bool:
    """A process that runs (an exited one may linger as a zombie: empty cmdline)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def allocate(env: Env, hostname: str) -> tuple[str, str, str]:
    inst = str(uuid.uuid4())
    (vif,) = I.allocate_for_instance(
        env.ctx, FLATDHCP, I.AllocateRequest(inst, "p1", env.agent_host, hostname=hostname)
    )
    return inst, vif["address"], vif["network"]["subnets"][0]["ips"][0]["address"]


@pytest.fixture
def env(world: World) -> Iterator[Env]:
    if shutil.which("dnsmasq") is None or shutil.which("dhcp_release") is None:
        pytest.fail("dnsmasq/dhcp_release missing: apt-get install dnsmasq-base dnsmasq-utils")
    host, vm, stray = world.ns("host"), world.ns("vm"), world.ns("stray")
    # A process in each namespace: a sweeper of another test session deletes nvt-*
    # namespaces that have none, and these would otherwise be empty between commands.
    pins = [
        n.popen("sleep", "3600", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in (host, vm, stray)
    ]
    br = f"br-{world.suffix}"
    host.run("ip", "link", "add", br, "type", "bridge")
    host.run("ip", "addr", "add", "10.0.0.1/24", "dev", br)
    host.run("ip", "link", "set", br, "up")
    for peer, port in ((vm, f"vh-{world.suffix}"), (stray, f"vs-{world.suffix}")):
        world.veth(host, port, peer, "eth0")
        host.run("ip", "link", "set", port, "master", br)

    # dnsmasq reads its files after dropping root: the whole path must be traversable
    # (a plain mkdtemp is 0700 and fails silently).
    state = Path(tempfile.mkdtemp(prefix="novanet-netns-dhcp-"))
    state.chmod(0o755)
    (state / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
    (state / "udhcpc.sh").chmod(0o755)
    url = f"sqlite:///{state}/novanet.sqlite"
    engine = create_engine(url)
    ensure_schema(engine)
    cfg = C.load(overrides={"flat_network_bridge": br, "connection": url, "host": "compute-1"})
    ctx = Ctx(engine, cfg)
    (net,) = N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="private", fixed_range_v4="10.0.0.0/24"))
    e = Env(host, vm, stray, br, state, ctx, url, net.uuid)
    try:
        yield e
    finally:
        try:
            e.drive("sync", [])
        finally:
            for pid in e.our_pids():  # whatever the driver could not stop: ours only
                os.kill(pid, signal.SIGTERM)
            # dnsmasq's script helper may still be running queued lease events
            wait_for(lambda: not lease_scripts_running(url), "lease scripts to finish", timeout=60)
            for pin in pins:
                pin.terminate()
                pin.wait(timeout=10)
            engine.dispose()
            shutil.rmtree(state, ignore_errors=True)


def test_dnsmasq_serves_exactly_the_allocated_address_and_reports_leases(env: Env) -> None:
    inst, mac, address = allocate(env, "vm1")
    env.vm.run("ip", "link", "set", "eth0", "address", mac)
    vm_host = DhcpHost(mac, "vm1", address)

    rep = env.drive("sync", [env.server(vm_host)])
    assert rep["errors"] == {} and rep["started"] == [env.net_uuid], env.log_tail()
    pid = rep["running"][env.net_uuid]
    st = {ln.split(":")[0]: ln.split()[1:] for ln in Path(f"/proc/{pid}/status").read_text().splitlines()}
    assert st["Uid"][0] != "0"  # it dropped root, and still reads hosts.d and opts below

    # the instance gets exactly its address and the network's options
    bound = env.dhcp(env.vm)
    assert bound == (
        f"bound ip={address} router=10.0.0.1 dns=192.0.2.53 domain=novalocal hostname=vm1 mtu=1400"
    ), env.log_tail()
    wait_for(lambda: env.fixed(address)["leased"], "the add event to mark the address leased")

    # an unknown MAC gets nothing
    assert env.dhcp(env.stray) is None, env.log_tail()
    assert "no address available" in env.log_tail()

    # a second instance is served without a restart or a signal (hostsdir + inotify)
    _, mac2, address2 = allocate(env, "vm2")
    env.stray.run("ip", "link", "set", "eth0", "address", mac2)
    rep = env.drive("sync", [env.server(vm_host, DhcpHost(mac2, "vm2", address2))])
    assert rep["hosts_added"] == 1 and rep["started"] == rep["restarted"] == rep["reloaded"] == []
    assert rep["running"][env.net_uuid] == pid
    assert f"ip={address2} " in (env.dhcp(env.stray) or ""), env.log_tail()
    wait_for(lambda: env.fixed(address2)["leased"], "the second lease")

    # dnsmasq dies: check sees it, the next sync restarts it, and its lease-init call
    # rebuilds its leases from the database (proved by the release below, which only
    # produces a "del" for a lease dnsmasq knows)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), "dnsmasq to die")
    both = env.server(vm_host, DhcpHost(mac2, "vm2", address2))
    assert env.drive("check", [both])["drift"] == [f"dhcp {env.net_uuid}: dnsmasq is not running"]
    rep = env.drive("sync", [both])
    assert rep["started"] == [env.net_uuid] and rep["running"][env.net_uuid] != pid
    pid = rep["running"][env.net_uuid]
    assert env.drive("check", [both])["drift"] == []

    # the instance goes: its host entry is removed with one SIGHUP, no restart, and
    # dhcp_release ends the lease; the del event frees the address in the database
    res = I.deallocate_for_instance(env.ctx, inst)
    assert res["awaiting_release"] == [address]
    remaining = env.server(DhcpHost(mac2, "vm2", address2))
    rep = env.drive("sync", [remaining])
    assert rep["hosts_removed"] == 1 and rep["reloaded"] == [env.net_uuid] and rep["restarted"] == []
    assert rep["running"][env.net_uuid] == pid
    env.drive("release", [remaining], [env.bridge, address, mac])
    wait_for(lambda: env.fixed(address)["instance_uuid"] is None, "the del event to free the address")
    freed = env.fixed(address)
    assert not freed["allocated"] and not freed["leased"]
    # the removed reservation is really gone from dnsmasq (SIGHUP dropped it)
    assert env.dhcp(env.vm) is None, env.log_tail()
    # and the other instance is still served
    assert f"ip={address2} " in (env.dhcp(env.stray) or ""), env.log_tail()

    rep = env.drive("sync", [])
    assert rep["stopped"] == [env.net_uuid] and rep["running"] == {}
    assert env.our_pids() == [] and not alive(pid)


def test_removed_host_stays_served_until_sighup(env: Env) -> None:
    """The dnsmasq fact the manager's SIGHUP rests on: a deleted hostsdir file keeps its
    reservation until SIGHUP."""
    _, mac, address = allocate(env, "vm1")
    env.vm.run("ip", "link", "set", "eth0", "address", mac)
    host = DhcpHost(mac, "vm1", address)
    rep = env.drive("sync", [env.server(host)])
    assert rep["errors"] == {}, env.log_tail()
    assert f"ip={address} " in (env.dhcp(env.vm) or ""), env.log_tail()
    wait_for(lambda: env.fixed(address)["leased"], "the lease")
    env.drive("release", [], [env.bridge, address, mac])
    wait_for(lambda: not env.fixed(address)["leased"], "the del event")

    # delete the file behind the manager's back: dnsmasq still serves the address
    hosts_dir = env.networks_path / env.agent_host / env.net_uuid / "hosts.d"
    (hosts_dir / mac.replace(":", "-")).unlink()
    assert f"ip={address} " in (env.dhcp(env.vm) or ""), env.log_tail()
    env.drive("release", [], [env.bridge, address, mac])
    wait_for(lambda: not env.fixed(address)["leased"], "the second del event")
    # ...until SIGHUP
    os.kill(env.drive("check", [])["running"][env.net_uuid], signal.SIGHUP)
    time.sleep(0.5)
    assert env.dhcp(env.vm) is None, env.log_tail()
