"""The agent survives what happens to hosts: kill -9 in the middle of a full sync of
1,000 floating IPs (twice: while making them local, while writing dnsmasq's hosts), an
outside `nft flush ruleset`, a killed dnsmasq, a deleted bridge, and a restart under a
running instance. Verified with independent tools (`ip -j`, `nft -j`, /proc, a real DHCP
client, `ip monitor`), not by the agent reading itself back.

Floating IPs here come from 10.64.0.0/22: the documentation ranges hold fewer than 1,000
addresses, and every address lives only inside the namespaces these tests make.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostlab import NOVANET, Lab, eventually, floating_local
from nslab import Netns, World

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.domain.modes import FLATDHCP
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
GATEWAY = "10.0.0.1"
HOST = "net1"
U1 = "11111111-1111-4111-8111-111111111111"


# --- independent views of a host ------------------------------------------------------------


def nft_table(ns: Netns, family: str) -> dict[str, Any]:
    """``nft -j list table FAMILY novanet``: chains -> rule comments, sets -> elements."""
    dump = json.loads(ns.run("nft", "-j", "list", "table", family, "novanet"))
    chains: dict[str, list[str]] = {}
    sets: dict[str, list[Any]] = {}
    for item in dump["nftables"]:
        ((kind, obj),) = item.items()
        if kind == "chain":
            chains.setdefault(obj["name"], [])
        elif kind == "rule":
            chains.setdefault(obj["chain"], []).append(obj.get("comment", ""))
        elif kind in ("set", "map"):
            sets[obj["name"]] = obj.get("elem", [])
    return {"chains": chains, "sets": sets}


def our_tables(ns: Netns) -> list[str]:
    return [line for line in ns.run("nft", "list", "tables").splitlines() if line.endswith(" novanet")]


def dnat_map(ns: Netns) -> dict[str, str]:
    return {k: v for k, v in nft_table(ns, "ip")["sets"].get("floating-dnat", [])}


def link_info(ns: Netns, name: str) -> dict[str, Any]:
    """``ip -j addr show dev NAME`` ({} when the device does not exist)."""
    out = ns.run("ip", "-j", "addr", "show", "dev", name, check=False)
    links = json.loads(out) if out.strip() else []
    return dict(links[0]) if links else {}


def bridge_addresses(ns: Netns, name: str) -> list[str]:
    """The IPv4 addresses of a device, in the kernel's order ([] when it does not exist)."""
    info = link_info(ns, name).get("addr_info", [])
    return [f"{a['local']}/{a['prefixlen']}" for a in info if a.get("family") == "inet"]


def master_of(ns: Netns, name: str) -> str | None:
    (link,) = json.loads(ns.run("ip", "-j", "link", "show", "dev", name))
    master = link.get("master")
    return str(master) if master else None


def pid_files(lab: Lab) -> list[Path]:
    return sorted(lab.root.glob(f"state-*/networks/{HOST}/*/pid"))


def dnsmasq_pid(lab: Lab) -> int | None:
    """The pid in the network's pid file if that process is our dnsmasq (checked in /proc)."""
    for pid_file in pid_files(lab):
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if cmdline[0].endswith(b"dnsmasq") and any(str(pid_file).encode() in a for a in cmdline):
            return pid
    return None


def dnsmasq_processes(lab: Lab) -> list[int]:
    """Every live dnsmasq serving one of this lab's networks (duplicates would show here),
    without the lease-script helper each one forks (same command line, its child)."""
    root = str(lab.root).encode()
    parent_of = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if cmdline[0].endswith(b"dnsmasq") and any(root in a for a in cmdline):
            parent_of[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return sorted(pid for pid, ppid in parent_of.items() if ppid not in parent_of)


def full_syncs(lab: Lab) -> int:
    return lab.agent_log(HOST).count(f"full sync of {HOST}:")


def agent_check(ns: Netns, conf: Path) -> tuple[int, str]:
    argv = [NOVANET, "--config-file", str(conf), "agent", "check", "--host", HOST]
    res = subprocess.run(["ip", "netns", "exec", ns.name, *argv], capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout + res.stderr


def started(lab: Lab, ns: Netns, conf: Path) -> subprocess.Popen[str]:
    """Start an agent and wait for its first full sync."""
    before = full_syncs(lab)
    proc = lab.start_agent(ns, conf, HOST)
    eventually(lambda: full_syncs(lab) > before or proc.poll() is not None, 90, what="a full sync")
    assert proc.poll() is None, lab.agent_log(HOST)
    return proc


def single_host(lab: Lab, world: World, **options: str) -> tuple[Netns, Netns, Path]:
    """An outside namespace and a FlatDHCP network host on it (pub0)."""
    outside, host = world.ns("out"), world.ns("host")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")
    conf = lab.config(
        HOST,
        network_manager="flatdhcp",
        flat_network_bridge="br100",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        host=HOST,
        network_host=HOST,
        force_dhcp_release="True",
        metadata_host="",
        **options,
    )
    return outside, host, conf


def service(conf: Path) -> Ctx:
    cfg = C.load(config_files=[str(conf)])
    engine = create_engine(cfg.database_url)
    ensure_schema(engine)
    return Ctx(engine, cfg)


# --- 1. kill -9 in the middle of a full sync ----------------------------------------------------

N_FLOATING = 1000
DISASSOCIATED = 40


def test_kill_9_during_a_full_sync_of_1000_floating_ips(lab: Lab, world: World) -> None:
    t0 = time.monotonic()
    _, host, conf = single_host(lab, world, quota_floating_ips="2000")
    ctx = service(conf)
    try:
        N.create_networks(
            ctx, FLATDHCP, N.NetworkRequest(label="private", fixed_range_v4="10.0.0.0/22", network_size=1024)
        )
        F.create_pool(ctx, "10.64.0.0/22", interface="pub0")
        # Instances live on another host: this one is their DHCP server and NAT.
        fixed_of: dict[str, str] = {}
        for i in range(N_FLOATING):
            u = str(uuid.UUID(int=i + 1, version=4))
            req = I.AllocateRequest(u, "p1", "cmp1", hostname=f"vm{i}")
            info = I.allocate_for_instance(ctx, FLATDHCP, req)
            fixed = info[0]["network"]["subnets"][0]["ips"][0]["address"]
            floating = F.allocate(ctx, "p1")["address"]
            F.associate(ctx, floating, u)
            fixed_of[floating] = fixed
    finally:
        ctx.engine.dispose()
    setup = time.monotonic() - t0

    # Kill the agent mid-sync: its nftables transaction is in, the floating IPs' local
    # routes are in (one batch) and dnsmasq has not been configured yet.
    agent = lab.start_agent(host, conf, HOST)
    local = eventually(
        lambda: len(floating_local(host, "pub0")) >= 50 or agent.poll() is not None, 90, 0.02, "local routes"
    )
    assert local
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    half = floating_local(host, "pub0")
    assert 50 <= len(half) <= N_FLOATING, f"not killed mid-sync: {len(half)} floating IPs local"
    assert full_syncs(lab) == 0 and dnsmasq_pid(lab) is None
    # The tables of the first (and only) full sync on a clean host are the reference.
    reference = {fam: nft_table(host, fam) for fam in ("ip", "bridge")}
    assert len(reference["ip"]["sets"]["floating-dnat"]) == N_FLOATING

    # While the agent is down, some floating IPs go: half of them already bound.
    by_address = sorted(fixed_of, key=lambda a: tuple(int(x) for x in a.split(".")))
    bound_gone = [a for a in by_address if a in half][: DISASSOCIATED // 2]
    unbound_gone = [a for a in reversed(by_address) if a not in half][: DISASSOCIATED // 2]
    # All may be bound already (one batch): then take the rest from the bound ones.
    bound_gone += [a for a in reversed(by_address) if a in half and a not in bound_gone][
        : DISASSOCIATED - len(bound_gone) - len(unbound_gone)
    ]
    ctx = service(conf)
    try:
        for a in bound_gone + unbound_gone:
            F.disassociate(ctx, a)
        associated = {
            r["address"]: r["fixed_address"] for r in F.list_floating(ctx) if r["instance_uuid"] is not None
        }
    finally:
        ctx.engine.dispose()
    assert len(associated) == N_FLOATING - DISASSOCIATED
    assert associated == {a: f for a, f in fixed_of.items() if a not in bound_gone + unbound_gone}

    # Killed again, this time while dnsmasq's hosts files are being written.
    agent = lab.start_agent(host, conf, HOST)
    networks = lab.root / f"state-{HOST}" / "networks" / HOST

    def hosts_written() -> int:
        return sum(len(os.listdir(d)) for d in networks.glob("*/hosts.d"))

    eventually(lambda: hosts_written() >= 20 or agent.poll() is not None, 90, 0.005, "hosts files")
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    assert 20 <= hosts_written() < N_FLOATING, f"not killed mid-sync: {hosts_written()} hosts files"
    assert full_syncs(lab) == 0 and dnsmasq_pid(lab) is None

    restarted = time.monotonic()
    started(lab, host, conf)
    resync = time.monotonic() - restarted

    # The ruleset is the desired state, once.
    rc, out = agent_check(host, conf)
    assert rc == 0, out
    assert sorted(our_tables(host)) == ["table bridge novanet", "table ip novanet"]
    assert dnat_map(host) == associated
    now = {fam: nft_table(host, fam) for fam in ("ip", "bridge")}
    for fam in ("ip", "bridge"):
        assert now[fam]["chains"] == reference[fam]["chains"], f"{fam} rules differ from a fresh full sync"
        assert set(now[fam]["sets"]) == set(reference[fam]["sets"])
    snat = dict(now["ip"]["sets"]["floating-snat"])
    assert snat == {f: a for a, f in associated.items()}
    assert len(now["ip"]["sets"]["floating-out"]) == len(associated)

    # Nothing leaked: exactly the associated floating IPs are local (routes, no /32
    # addresses), one dnsmasq with one file per host.
    assert floating_local(host, "pub0") == set(associated)
    assert not set(bound_gone) & (set(dnat_map(host)) | floating_local(host, "pub0"))
    assert set(bridge_addresses(host, "pub0")) == {f"{PUBLIC_HOST}/24"}
    assert dnsmasq_processes(lab) == [dnsmasq_pid(lab)]
    (pid_file,) = pid_files(lab)
    hosts = os.listdir(pid_file.parent / "hosts.d")
    assert len(hosts) == N_FLOATING and not [h for h in hosts if h.startswith(".")]
    print(f"setup {setup:.1f}s, full sync after the kills {resync:.1f}s")


# --- 2. drift repaired while the agent runs, reported while it is down ---------------------------


def one_instance(lab: Lab, world: World, host: Netns, conf: Path) -> tuple[Netns, str, str]:
    """Network, pool, one instance on this host with a floating IP; returns (vm, fixed, floating)."""
    vm = world.ns("vm1")
    lab.cli(conf, "network", "create", "--label", "private", "--fixed-range-v4", "10.0.0.0/24")
    lab.cli(conf, "floating", "create", "--ip-range", "203.0.113.16/29", "--interface", "pub0")
    info = lab.cli_json(conf, "instance", "allocate", U1, "--project-id", "p1", "--host", HOST)
    fixed = info[0]["network"]["subnets"][0]["ips"][0]["address"]
    floating = lab.cli_json(conf, "floating", "allocate", "--project-id", "p1")["address"]
    lab.cli(conf, "floating", "associate", floating, "--instance", U1)
    return vm, fixed, floating


def repaired(what: str, fn: Callable[[], object], timeout: float = 10.0) -> float:
    """Seconds until ``fn`` holds; fails after ``timeout``."""
    t = time.monotonic()
    eventually(fn, timeout, 0.1, what)
    return time.monotonic() - t


def test_drift_is_repaired_within_10s_and_reported_while_the_agent_is_down(lab: Lab, world: World) -> None:
    outside, host, conf = single_host(lab, world)
    vm, fixed, floating = one_instance(lab, world, host, conf)
    agent = started(lab, host, conf)
    lab.cli(conf, "vif", "plug", U1, "--netns", vm.name, ns=host)
    assert lab.dhcp(vm) == fixed
    inbound = lab.listen(vm, 2222)
    eventually(lambda: lab.connect(outside, floating, 2222), 10, what="TCP to the floating IP")
    tap = ("tap" + json.loads(lab.cli(conf, "instance", "show", U1, "--json"))["network_info"][0]["id"])[:14]
    times = {}

    # An outside flush of the whole ruleset: our tables (and the floating path) come back.
    host.run("nft", "flush", "ruleset")
    assert our_tables(host) == []
    times["nft flush ruleset"] = repaired("our tables", lambda: len(our_tables(host)) == 2)
    assert dnat_map(host) == {floating: fixed}
    eventually(lambda: lab.connect(outside, floating, 2222), 10, what="floating path after the flush")

    # dnsmasq killed: restarted, and the instance still gets its lease.
    old = dnsmasq_pid(lab)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    times["dnsmasq kill -9"] = repaired("a new dnsmasq", lambda: dnsmasq_pid(lab) not in (None, old))
    assert lab.dhcp(vm) == fixed

    # The bridge deleted: back with its address, the instance's port on it, DHCP working.
    host.run("ip", "link", "del", "br100")
    times["ip link del br100"] = repaired(
        "br100 with its gateway", lambda: f"{GATEWAY}/24" in bridge_addresses(host, "br100")
    )
    eventually(lambda: master_of(host, tap) == "br100", 10, what=f"{tap} back on br100")
    assert eventually(lambda: lab.dhcp(vm, tries=3), 30, what="DHCP after the bridge came back") == fixed
    assert vm.ok("ping", "-c", "1", "-W", "2", GATEWAY)
    rc, out = agent_check(host, conf)
    assert rc == 0, out

    # Agent down: the same drift, and `agent check` names each piece of it.
    lab.stop_agent(agent)
    assert agent.returncode == 0
    host.run("nft", "flush", "ruleset")
    pid = dnsmasq_pid(lab)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    host.run("ip", "link", "del", "br100")
    eventually(lambda: dnsmasq_pid(lab) is None, 5, what="dnsmasq gone")
    rc, out = agent_check(host, conf)
    assert rc == 1, out
    for needle in ("table ip novanet is missing", "table bridge novanet is missing"):
        assert f"nftables: {needle}" in out, out
    assert "links: bridge br100 is missing" in out, out
    assert "dnsmasq is not running" in out, out
    assert floating not in out  # (still local on pub0: that part did not drift)

    before = full_syncs(lab)
    lab.start_agent(host, conf, HOST)
    times["all three, agent restarted"] = repaired("a full sync", lambda: full_syncs(lab) > before, 30)
    rc, out = agent_check(host, conf)
    assert rc == 0, out
    eventually(lambda: master_of(host, tap) == "br100", 10, what=f"{tap} back on br100")
    assert eventually(lambda: lab.dhcp(vm, tries=3), 30, what="DHCP after the repair") == fixed
    eventually(lambda: lab.connect(outside, floating, 2222), 10, what="floating path after the repair")
    assert set(inbound.read_text().split()) == {OUTSIDE}
    print("repaired in", {k: round(v, 1) for k, v in times.items()})


# --- 3. an instance keeps its address across an agent restart --------------------------------------


class LinkMonitor:
    """``ip -4 -o monitor link address`` in a namespace, bracketed by marker events.

    Only IPv4 address events: the kernel adds IPv6 link-local addresses to the bridge and
    its ports on its own, whenever DAD happens to finish, and that says nothing about
    the agent. The start marker (a veth pair made here) proves the monitor is subscribed
    before anything is measured; the end marker (the pair deleted) that every earlier
    event has been written, since netlink delivers one socket's messages in order. No
    sleeps, no guessing how long either takes.
    """

    def __init__(self, lab: Lab, ns: Netns) -> None:
        self.ns, self.out = ns, lab.root / "monitor.log"
        self.marker = f"mk{uuid.uuid4().hex[:8]}"
        with open(self.out, "w") as sink:
            argv = ("ip", "-4", "-o", "monitor", "link", "address")
            self.proc = ns.popen(*argv, stdout=sink, stderr=subprocess.STDOUT)
        lab.helpers.append(self.proc)

        def subscribed() -> bool:
            # re-made until seen: an event sent before the subscription is lost for good
            ns.run("ip", "link", "del", f"{self.marker}a", check=False)
            ns.run("ip", "link", "add", f"{self.marker}a", "type", "veth", "peer", "name", f"{self.marker}b")
            return self._seen(lambda line: f"{self.marker}a" in line and not line.startswith("Deleted"), 1.0)

        eventually(subscribed, 15, 0, "ip monitor subscribed")

    def _seen(self, pred: Callable[[str], bool], timeout: float) -> bool:
        try:
            eventually(lambda: any(pred(line) for line in self.out.read_text().splitlines()), timeout, 0.02)
        except AssertionError:
            return False
        return True

    def stop(self) -> list[str]:
        """The events since the monitor subscribed, without the markers' own."""
        self.ns.run("ip", "link", "del", f"{self.marker}a")
        done = self._seen(lambda line: line.startswith("Deleted") and f"{self.marker}b" in line, 15)
        assert done, "the end marker never reached ip monitor"
        self.proc.kill()
        self.proc.wait(timeout=10)
        return [line for line in self.out.read_text().splitlines() if self.marker not in line]


def test_instance_keeps_its_lease_across_an_agent_restart(lab: Lab, world: World) -> None:
    _, host, conf = single_host(lab, world, dhcp_lease_time="120")
    vm, fixed, _ = one_instance(lab, world, host, conf)
    agent = started(lab, host, conf)
    lab.cli(conf, "vif", "plug", U1, "--netns", vm.name, ns=host)

    # A long-running DHCP client, as in a guest: SIGUSR1 makes it renew (unicast REQUEST).
    lease = lab.root / "lease-bg"
    client_log = lab.root / "udhcpc-bg.log"
    udhcpc = ["udhcpc", "-i", "eth0", "-f", "-t", "10", "-T", "1", "-s", str(lab.root / "udhcpc.sh")]
    with open(client_log, "w") as log:
        client = vm.popen(
            "env", f"LEASE_OUT={lease}", "busybox", *udhcpc, stdout=log, stderr=subprocess.STDOUT
        )
    lab.helpers.append(client)
    eventually(lambda: lease.exists() and lease.read_text().strip() == fixed, 30, what="first lease")

    def renewed() -> str:
        lease.unlink()
        client.send_signal(signal.SIGUSR1)
        return eventually(
            lambda: lease.read_text().strip() if lease.exists() else "", 15, what="renewed lease"
        )

    bridge_index = link_info(host, "br100")["ifindex"]
    server = dnsmasq_pid(lab)
    monitor = LinkMonitor(lab, host)

    lab.stop_agent(agent)
    assert agent.returncode == 0
    # DHCP does not depend on the agent: the renew is answered while it is down.
    assert dnsmasq_pid(lab) == server
    assert renewed() == fixed
    assert "sending renew" in client_log.read_text()
    renewals = client_log.read_text().count("obtained")

    started(lab, host, conf)
    assert renewed() == fixed
    assert client_log.read_text().count("obtained") > renewals

    # Nothing flapped: same bridge, same dnsmasq, no link or address event on the host.
    assert link_info(host, "br100")["ifindex"] == bridge_index
    assert dnsmasq_pid(lab) == server
    assert bridge_addresses(host, "br100") == [f"{GATEWAY}/24"]
    events = monitor.stop()
    assert not [e for e in events if "Deleted" in e or "br100" in e], events
    rc, out = agent_check(host, conf)
    assert rc == 0, out
