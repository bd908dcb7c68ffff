"""Host NAT benchmark: novanet's nftables maps against nova-network's linear iptables rules.

    sudo .venv/bin/python benchmarks/hostnat.py            # full run (10,000 floating IPs)
    sudo .venv/bin/python benchmarks/hostnat.py --quick    # smoke run (100 / 1,000)
    sudo .venv/bin/python benchmarks/hostnat.py --json     # one JSON object on stdout

Everything happens inside network namespaces this script creates (``nvb-<role>-<pid>-<hex>``)
and removes at the end, with every process it started, also on Ctrl-C, SIGTERM or an error.
Traffic flows only between those namespaces; nothing is added to the root namespace.

What it measures, in one run (see benchmarks/README-host.md and docs/benchmarks-host.md):

1. a real ``novanet agent`` in a host namespace, on a SQLite database holding N instances
   with N associated floating IPs: the time from ``floating associate`` (service API) of
   one more floating IP until the kernel has it (``nft monitor`` in the namespace sees the
   element when the agent's transaction commits; ``nft get element ip novanet
   floating-dnat { ADDR }`` is then checked), and the agent's own partial sync time; plus
   the full sync (``RealNft.apply(full_sync(state))``) of N floating IPs + N VIF filters;
2. new TCP connections per second (connect + recv + close) through the 1st and the Nth
   floating IP of that agent's host;
3. side by side at each size: nova-network's approach (the whole nat table rewritten with
   iptables-restore, one DNAT rule in PREROUTING and OUTPUT and one SNAT rule per floating
   IP), with iptables-legacy and with iptables-nft, against novanet's element delta: time
   per change (add one floating IP) and connections per second through the last one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes.util
import datetime as dt
import ipaddress
import json
import os
import platform
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from novanet import config as C
from novanet.agent import snapshot
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.domain.modes import FLATDHCP
from novanet.host.desired import SnapFloating, desired_state
from novanet.host.model import Bridge, FloatingNat, HostState, NatState, VifFilter
from novanet.host.nft import render as nft_render
from novanet.host.nft.realizer import RealNft, delta, full_sync
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

PREFIX = "nvb-"  # namespaces of this benchmark: nvb-<role>-<pid>-<hex>
PUBLIC_IP = "203.0.113.1"  # the host's address on pub0 (routing_source_ip)
OUTSIDE_IP = "203.0.113.254"  # the outside namespace
CLIENT_SOURCES = [f"203.0.113.{i}" for i in range(100, 250)]  # one fresh source per rate run
FLOATING_BASE = int(ipaddress.IPv4Address("198.18.0.0"))  # RFC 2544 benchmarking range
FLOATING_ROUTE = "198.18.0.0/15"
FLOATING_POOL = "198.18.0.0/18"  # 16,382 floating IPs in the agent's database
AGENT_RANGE = "10.0.0.0/18"  # the agent's FlatDHCP network (network_size 16384)
SYNTH_RANGE = "10.0.0.0/16"
SYNTH_FIXED = ("10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13")  # real instance addresses
PORT = 5001
METRICS_PORT = 9109
HOST = "bench-net"
PROJECT = "bench"
CHANGES = 3  # changes timed per size and system (the median is reported)
E2E_SAMPLES = 10

TARGET_E2E_MS = 50.0
TARGET_FULL_SYNC_S = 5.0
TARGET_RATIO_DEVIATION = 0.10

IPTABLES = {  # baseline name -> (restore, save)
    "iptables-legacy": ("iptables-legacy-restore", "iptables-legacy-save"),
    "iptables-nft": ("iptables-nft-restore", "iptables-nft-save"),
}


class BenchError(RuntimeError):
    pass


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C so every namespace and process is removed."""


def fip(i: int) -> str:
    """The i-th floating IP (1-based), 198.18.0.1 onwards."""
    return str(ipaddress.IPv4Address(FLOATING_BASE + i))


def synth_fixed(i: int) -> str:
    return SYNTH_FIXED[i % len(SYNTH_FIXED)]


def progress(enabled: bool, msg: str) -> None:
    if enabled:
        print(f"[hostnat {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise BenchError(f"{' '.join(argv[:8])} failed ({res.returncode}): {res.stderr.strip()[:500]}")
    return res.stdout


def timed(argv: Sequence[str], *, input: str | None = None, timeout: float = 300) -> float:
    t = time.perf_counter()
    sh(argv, input=input, timeout=timeout)
    return time.perf_counter() - t


# --- small programs run inside the namespaces -------------------------------------------

SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4096)
    accept = s.accept
    while True:
        c, _ = accept()
        c.send(b"ok")
        c.close()
    """
)

# One tight loop per run: a new TCP connection, read 2 bytes, close; counts for `secs`.
CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    IP_BIND_ADDRESS_NO_PORT = 24
    clock = time.perf_counter
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        dst, src = (cmd["addr"], cmd["port"]), (cmd["src"], 0)
        n = err = 0
        last_err = ""
        times = []
        start = now = clock()
        end = start + cmd["secs"]
        while now < end:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind(src)
                s.settimeout(2.0)
                s.connect(dst)
                if s.recv(2) == b"ok":
                    n += 1
                else:
                    err += 1
            except OSError as exc:
                err += 1
                last_err = str(exc)
            finally:
                s.close()
            t = clock()
            times.append(t - now)
            now = t
        times.sort()
        median = times[len(times) // 2] if times else 0.0
        slow = sum(1 for t in times if t > 0.01)
        res = {
            "n": n, "err": err, "secs": now - start, "median": median, "last_err": last_err,
            "slow": slow, "max": times[-1] if times else 0.0,
        }
        print(json.dumps(res), flush=True)
    """
)

# Runs in the agent's host namespace: asks the kernel for one element through libnftables,
# and reads the agent's own metrics (served on the namespace's loopback).
HELPER = textwrap.dedent(
    """
    import ctypes, json, sys, urllib.request
    lib = ctypes.CDLL(sys.argv[1])
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ctx = lib.nft_ctx_new(0)
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    metrics_url = f"http://127.0.0.1:{sys.argv[2]}/metrics"

    def present(addr):
        cmd = f"get element ip novanet floating-dnat {{ {addr} }}".encode()
        return lib.nft_run_cmd_from_buffer(ctx, cmd) == 0

    def metrics():
        out = {}
        try:
            text = urllib.request.urlopen(metrics_url, timeout=2).read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith("novanet_sync_duration_seconds_") and "{" in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "metrics":
            print(json.dumps(metrics()), flush=True)
        elif cmd["op"] == "present":
            print(json.dumps({"present": present(cmd["addr"])}), flush=True)
        elif cmd["op"] == "addresses":  # what the agent's bind_addresses lists on each sync
            import time
            from novanet.host.netlink.pyroute import PyrouteLinks
            links = PyrouteLinks()
            t = time.perf_counter()
            n = len(links.addresses(cmd["iface"]))
            print(json.dumps({"n": n, "s": time.perf_counter() - t}), flush=True)
            links.close()
    """
)


def metric(values: dict[str, Any], kind: str, what: str) -> float:
    return float(values.get(f'novanet_sync_duration_seconds_{what}{{kind="{kind}"}}', 0.0))


class Monitor:
    """`nft monitor new elements` in a namespace: the kernel announces each element when
    the transaction that adds it commits, so the time a line arrives is when it is there."""

    def __init__(self, lab: Lab, ns: str) -> None:
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, "nft", "monitor", "new", "elements"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        lab.procs.append(self.popen)  # type: ignore[arg-type]
        assert self.popen.stdout is not None
        self.fd = self.popen.stdout.fileno()
        self.buf = b""

    def drain(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            if not os.read(self.fd, 1 << 16):
                raise BenchError("nft monitor exited")
        self.buf = b""

    def wait_for(self, needle: str, timeout: float) -> float | None:
        """The monotonic time the first line containing ``needle`` arrived, or None."""
        want = needle.encode()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                break
            data = os.read(self.fd, 1 << 16)
            arrived = time.monotonic()
            if not data:
                raise BenchError("nft monitor exited")
            *lines, self.buf = (self.buf + data).split(b"\n")
            if any(want in line for line in lines):
                return arrived
        return None


# --- namespaces and processes ---------------------------------------------------------


class Proc:
    """A line-oriented helper process (JSON in, JSON out) started by this benchmark."""

    def __init__(self, popen: subprocess.Popen[str], what: str) -> None:
        self.popen, self.what = popen, what
        self.first = self.read(30)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(obj) + "\n")
        self.popen.stdin.flush()

    def read(self, timeout: float = 120) -> dict[str, Any]:
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline() if ready else ""
        if not line:
            raise BenchError(f"{self.what} did not answer (exit status {self.popen.poll()})")
        return dict(json.loads(line))

    def ask(self, obj: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        self.send(obj)
        return self.read(timeout)


@dataclass
class Lab:
    """Namespaces, helper processes and a temporary directory, all removed by ``close``."""

    verbose: bool
    suffix: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(2)}")
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="novanet-hostnat-")))
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    agents: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.chmod(0o755)  # dnsmasq reads its files after dropping privileges

    def ns(self, role: str) -> str:
        name = f"{PREFIX}{role}-{self.suffix}"
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ex(name, "ip", "link", "set", "lo", "up")
        return name

    def ex(
        self, ns: str, *argv: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        return sh(["ip", "netns", "exec", ns, *argv], input=input, check=check, timeout=timeout)

    def batch(self, ns: str, lines: list[str]) -> None:
        self.ex(ns, "ip", "-batch", "-", input="\n".join(lines) + "\n")

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair with one end in each namespace (created inside ``a``, never in root)."""
        self.ex(a, "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
        self.ex(a, "ip", "link", "set", a_if, "up")
        self.ex(b, "ip", "link", "set", b_if, "up")

    def sysctl(self, ns: str, values: dict[str, str]) -> None:
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            self.ex(ns, "sh", "-c", f'[ -w "{path}" ] && echo {value} > "{path}" || true')

    def spawn(self, ns: str, argv: Sequence[str], what: str, *, lines: bool = True) -> Proc | None:
        popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.PIPE if lines else subprocess.DEVNULL,
            stdout=subprocess.PIPE if lines else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(popen)
        return Proc(popen, what) if lines else None

    def close(self) -> None:
        for p in self.agents:
            _end(p, signal.SIGTERM, 15)
        for p in self.procs:
            _end(p, signal.SIGKILL, 10)
        for pid_file in self.root.glob("state/networks/*/*/pid"):
            _stop_dnsmasq(pid_file)
        for pid in _dnsmasq_of(self.root):  # one whose pid file went missing
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for name in reversed(self.namespaces):
            sh(["ip", "netns", "del", name], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _end(p: subprocess.Popen[str], sig: int, wait: float) -> None:
    if p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(sig)
    try:
        p.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def _stop_dnsmasq(pid_file: Path) -> None:
    """The agent leaves dnsmasq running on purpose: end the ones of this run, by pid, after
    checking that the process is a dnsmasq started with this pid file."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if cmdline and cmdline[0].endswith(b"dnsmasq") and any(str(pid_file).encode() in a for a in cmdline):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)


def _dnsmasq_of(root: Path) -> list[int]:
    """dnsmasq processes started (by our agent) with files under ``root``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq") and any(str(root).encode() + b"/" in a for a in argv):
            out.append(int(proc.name))
    return out


def sweep() -> None:
    """Remove namespaces a killed earlier run left behind: ours by prefix, whose creating
    process is gone and which nothing uses any more."""
    for line in sh(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if not name.startswith(PREFIX) or len(parts) < 4 or not parts[-2].isdigit():
            continue
        if Path(f"/proc/{parts[-2]}").exists() or sh(["ip", "netns", "pids", name], check=False).split():
            continue
        sh(["ip", "netns", "del", name], check=False)


# --- topology -----------------------------------------------------------------------------


HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # Every measured connection ends in conntrack; keep the closed ones short-lived in our
    # own namespaces so repeated runs never fill the table.
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_close": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": "2",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "2",
}


@dataclass
class Site:
    """outside --(out0|pub0)-- host --(instance side)-- instance(s): one per system."""

    name: str
    out: str
    host: str
    client: Proc
    sources: Iterator[str]


def make_site(lab: Lab, tag: str) -> Site:
    out, host = lab.ns(f"{tag}-out"), lab.ns(f"{tag}-host")
    lab.veth(host, "pub0", out, "out0")
    lab.ex(host, "ip", "addr", "add", f"{PUBLIC_IP}/24", "dev", "pub0")
    lab.batch(
        out,
        [f"addr add {OUTSIDE_IP}/24 dev out0"]
        + [f"addr add {a}/24 dev out0" for a in CLIENT_SOURCES]
        + [f"route add {FLOATING_ROUTE} via {PUBLIC_IP}"],
    )
    lab.sysctl(host, HOST_SYSCTLS)
    client = lab.spawn(out, [sys.executable, "-c", CLIENT], f"client in {out}")
    assert client is not None

    def sources() -> Iterator[str]:
        while True:
            yield from CLIENT_SOURCES

    return Site(tag, out, host, client, sources())


def add_synthetic_instance(lab: Lab, site: Site) -> None:
    """A plain instance behind the host (veth, no bridge) holding the fixed addresses every
    floating IP of the synthetic tables maps to."""
    vm = lab.ns(f"{site.name}-vm")
    lab.veth(site.host, "inst0", vm, "eth0")
    lab.ex(site.host, "ip", "addr", "add", "10.0.0.1/16", "dev", "inst0")
    lab.batch(vm, [f"addr add {a}/16 dev eth0" for a in SYNTH_FIXED] + ["route add default via 10.0.0.1"])
    start_server(lab, vm)


def start_server(lab: Lab, vm: str) -> None:
    lab.spawn(vm, [sys.executable, "-c", SERVER, str(PORT)], f"server in {vm}", lines=False)
    deadline = time.monotonic() + 15
    while f":{PORT} " not in lab.ex(vm, "ss", "-ltnH", check=False):
        if time.monotonic() > deadline:
            raise BenchError(f"the TCP server in {vm} did not start")
        time.sleep(0.05)


@dataclass
class RateRun:
    label: str
    site: Site
    addr: str
    conns: int = 0
    errors: int = 0
    secs: float = 0.0
    last_error: str = ""
    slices: list[float] = field(default_factory=list)  # conns/s of each slice
    medians: list[float] = field(default_factory=list)  # median time of one connection, per slice
    slow: int = 0  # connections that took more than 10 ms
    max_s: float = 0.0

    @property
    def per_s(self) -> float:
        """The median slice: robust against bursts of other work on the machine."""
        return statistics.median(self.slices) if self.slices else 0.0

    @property
    def conn_us(self) -> float:
        """Median over the slices of the median connect + recv + close time."""
        return statistics.median(self.medians) * 1e6 if self.medians else 0.0

    @property
    def overall(self) -> float:
        return self.conns / self.secs if self.secs else 0.0


def measure_rates(runs: list[RateRun], rounds: int, secs: float) -> None:
    """Connections/s of each run, interleaved round by round (A B C A B C ...) so slow
    drifts of the machine's load hit all of them alike; a fresh client source address per
    slice keeps conntrack and TIME_WAIT of earlier slices out of the way."""
    for r in runs:  # warm-up: ARP, route caches, the server's first accept
        r.site.client.ask({"addr": r.addr, "port": PORT, "secs": 0.2, "src": next(r.site.sources)}, 30)
    for _ in range(rounds):
        for r in runs:
            res = r.site.client.ask(
                {"addr": r.addr, "port": PORT, "secs": secs, "src": next(r.site.sources)}, secs + 60
            )
            r.conns += int(res["n"])
            r.errors += int(res["err"])
            r.secs += float(res["secs"])
            r.slices.append(int(res["n"]) / float(res["secs"]))
            r.medians.append(float(res["median"]))
            r.slow += int(res["slow"])
            r.max_s = max(r.max_s, float(res["max"]))
            r.last_error = res.get("last_err") or r.last_error


def paired_ratio(a: RateRun, b: RateRun) -> float:
    """Median over the rounds of b's slice / a's slice: the two slices of a round run back
    to back, so they share whatever else the machine was doing at that moment."""
    ratios = [y / x for x, y in zip(a.slices, b.slices, strict=True) if x > 0]
    return statistics.median(ratios) if ratios else 0.0


def check_reachable(site: Site, addr: str) -> None:
    res = site.client.ask({"addr": addr, "port": PORT, "secs": 0.05, "src": next(site.sources)}, 60)
    if res["n"] == 0:
        raise BenchError(f"{site.name}: no TCP connection through {addr}: {res.get('last_err')}")


# --- synthetic states and tables --------------------------------------------------------------


def synthetic_state(n_floating: int, n_vifs: int = 0) -> HostState:
    """What an agent would compute for a host NATing ``n_floating`` floating IPs onto the
    few real instance addresses, plus ``n_vifs`` anti-spoofing filters."""
    nat = NatState(
        public_interface="pub0",
        routing_source_ip=PUBLIC_IP,
        snat_ranges=(SYNTH_RANGE,),
        no_snat_destinations=(f"{PUBLIC_IP}/32",),
        metadata_host=PUBLIC_IP,
        floating=tuple(FloatingNat(fip(i), synth_fixed(i), "pub0") for i in range(1, n_floating + 1)),
    )
    vifs = tuple(
        VifFilter(
            f"tap{i:011x}",
            "br100",
            "02:" + ":".join(f"{b:02x}" for b in i.to_bytes(5, "big")),
            (str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.1.0.0")) + i)),),
        )
        for i in range(1, n_vifs + 1)
    )
    bridges = (Bridge("br100", ("10.0.0.1/16",)),) if n_vifs else ()
    return HostState(host=HOST, bridges=bridges, nat=nat, vifs=vifs)


def nova_nat_table(n_floating: int) -> str:
    """The nat table as nova-network's linux_net/IptablesManager wrote it: its wrapped chains,
    the SNAT of the fixed range, the metadata DNAT, and per floating IP one DNAT rule in
    PREROUTING, one in OUTPUT and one SNAT rule, in association order (a linear walk)."""
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":nova-network-PREROUTING - [0:0]",
        ":nova-network-OUTPUT - [0:0]",
        ":nova-network-POSTROUTING - [0:0]",
        ":nova-network-snat - [0:0]",
        ":nova-network-float-snat - [0:0]",
        ":nova-postrouting-bottom - [0:0]",
        "-A PREROUTING -j nova-network-PREROUTING",
        "-A OUTPUT -j nova-network-OUTPUT",
        "-A POSTROUTING -j nova-network-POSTROUTING",
        "-A POSTROUTING -j nova-postrouting-bottom",
        "-A nova-postrouting-bottom -j nova-network-snat",
        "-A nova-network-snat -j nova-network-float-snat",
        f"-A nova-network-snat -s {SYNTH_RANGE} -o pub0 -j SNAT --to-source {PUBLIC_IP}",
        f"-A nova-network-POSTROUTING -s {SYNTH_RANGE} -d {PUBLIC_IP}/32 -j ACCEPT",
        f"-A nova-network-POSTROUTING -s {SYNTH_RANGE} -d {SYNTH_RANGE}"
        " -m conntrack ! --ctstate DNAT -j ACCEPT",
        f"-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80"
        f" -j DNAT --to-destination {PUBLIC_IP}:8775",
    ]
    for i in range(1, n_floating + 1):
        lines.append(f"-A nova-network-PREROUTING -d {fip(i)}/32 -j DNAT --to-destination {synth_fixed(i)}")
    for i in range(1, n_floating + 1):
        lines.append(f"-A nova-network-OUTPUT -d {fip(i)}/32 -j DNAT --to-destination {synth_fixed(i)}")
    for i in range(1, n_floating + 1):
        lines.append(f"-A nova-network-float-snat -s {synth_fixed(i)}/32 -j SNAT --to-source {fip(i)}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# --- part 1 and 2: the real agent ---------------------------------------------------------------


@dataclass
class AgentResult:
    floating_ips: int
    db_setup_s: float
    agent_ready_s: float  # agent started -> the Nth floating IP in the kernel
    agent_full_sync_s: float  # the agent's own metric
    e2e_ms: list[float]
    service_ms: list[float]
    partial_sync_ms: list[float]  # the agent's own metric: the whole partial sync
    # the steps of a partial sync re-run on the same data (ms): where its time goes
    breakdown_ms: dict[str, float]
    rate_first: float
    rate_last: float
    conn_us_first: float
    conn_us_last: float
    rate_ratio_paired: float  # median of (slice through #N / slice through #1) per round
    slow_conns: int  # connections that took more than 10 ms
    rate_errors: int
    agent_idle_cpu: float  # share of one core the agent used while nothing changed
    drift_check_s: float
    drift_check_ok: bool
    first_addr: str
    last_addr: str


def _write_agent_conf(lab: Lab, db_url: str) -> Path:
    conf = lab.root / "agent.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            [DEFAULT]
            state_path = {lab.root}/state
            network_manager = flatdhcp
            flat_network_bridge = br100
            public_interface = pub0
            my_ip = {PUBLIC_IP}
            host = {HOST}
            network_host = {HOST}
            metadata_host =
            quota_fixed_ips = -1
            quota_floating_ips = -1
            agent_resync_interval = 3600
            [database]
            connection = {db_url}
            """
        )
    )
    return conf


def _setup_db(url: str, n: int, verbose: bool) -> tuple[Ctx, list[tuple[str, str, str]]]:
    """N instances on the host, each with an auto-assigned (so associated) floating IP."""
    cfg = C.load(
        overrides={
            "connection": url,
            "network_manager": "flatdhcp",
            "flat_network_bridge": "br100",
            "public_interface": "pub0",
            "my_ip": PUBLIC_IP,
            "host": HOST,
            "network_host": HOST,
            "quota_fixed_ips": -1,
            "quota_floating_ips": -1,
            "auto_assign_floating_ip": True,
        }
    )
    engine = create_engine(url)
    sync(engine)
    ctx = Ctx(engine, cfg)
    N.create_networks(
        ctx, FLATDHCP, N.NetworkRequest("bench", AGENT_RANGE, num_networks=1, network_size=16384)
    )
    F.create_pool(ctx, FLOATING_POOL, interface="pub0")
    for i in range(n):
        I.allocate_for_instance(ctx, FLATDHCP, I.AllocateRequest(str(uuid.uuid4()), PROJECT, HOST))
        if verbose and (i + 1) % 2000 == 0:
            progress(verbose, f"  {i + 1} instances with floating IPs")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.address, x.address, x.instance_uuid FROM floating_ips f"
                " JOIN fixed_ips x ON x.id = f.fixed_ip_id ORDER BY f.id"
            )
        ).all()
    if len(rows) != n:
        raise BenchError(f"{len(rows)} floating IPs associated, expected {n}")
    return ctx, [(r[0], r[1], r[2]) for r in rows]


def _plug_instances(lab: Lab, conf: Path, host: str, instances: list[tuple[str, str]]) -> None:
    """Plug each instance (fixed address, uuid) with `novanet vif plug` into ONE instance
    namespace (eth0, eth1, ...), so one TCP server process serves every measured floating
    IP: two server processes would differ in where the scheduler puts them.

    Each address answers ARP and sends only through its own VIF (arp_ignore, a routing
    table per source address), as the anti-spoofing filter of its port requires."""
    vm = lab.ns("ag-vm")
    novanet = str(Path(sys.executable).with_name("novanet"))
    lab.sysctl(
        vm,
        {
            f"net.ipv4.conf.{dev}.{key}": value
            for dev in ("all", "default")
            for key, value in (("arp_ignore", "1"), ("arp_announce", "2"), ("rp_filter", "0"))
        },
    )
    batch = []
    for i, (fixed, instance) in reversed(list(enumerate(instances))):
        lab.ex(host, novanet, "--config-file", str(conf), "vif", "plug", instance, "--netns", vm, timeout=60)
        dev = f"eth{i}"
        if dev != "eth0":  # the plug made it eth0: give the name to the next one
            lab.batch(vm, ["link set eth0 down", f"link set eth0 name {dev}", f"link set {dev} up"])
        table = 100 + i
        batch += [
            f"addr add {fixed}/18 dev {dev}",
            f"rule add from {fixed} lookup {table}",
            f"route add {AGENT_RANGE} dev {dev} src {fixed} table {table}",
            f"route add default via 10.0.0.1 dev {dev} table {table}",
        ]
    lab.batch(vm, [*batch, "route add default via 10.0.0.1"])
    start_server(lab, vm)


def cpu_share(pid: int, secs: float) -> float:
    """CPU time of process ``pid`` over ``secs`` of wall time (1.0 = one core)."""

    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), ticks()
    time.sleep(secs)
    return (ticks() - c0) / hz / (time.monotonic() - t0)


def partial_breakdown(ctx: Ctx, conf: Path, helper: Proc) -> dict[str, float]:
    """The pure steps of the agent's partial sync for one more floating IP, timed on the
    same database in this process; and, for comparison, listing the addresses of pub0 in
    the namespace (a full sync and the drift check do it; the partial path does not)."""
    cfg = C.load([str(conf)])
    with ctx.engine.connect() as conn:
        snap = snapshot.read_snapshot(conn, HOST)
    nft_render.build.cache_clear()
    old = desired_state(snap, HOST, cfg)
    nft_render.build(old)  # the agent has the last applied state rendered already
    extra = fip(60000)  # not in the pool: nothing is applied
    snap.floating[extra] = SnapFloating(extra, next(iter(snap.floating.values())).fixed_address, "pub0")
    t = time.perf_counter()
    new = desired_state(snap, HOST, cfg)
    t1 = time.perf_counter()
    new_hash = hash(new)
    t2 = time.perf_counter()
    nft_render.build(new)
    t3 = time.perf_counter()
    cmds = delta(old, new)
    t4 = time.perf_counter()
    nft_render.build.cache_clear()
    listed = helper.ask({"op": "addresses", "iface": "pub0"}, 300)
    del new_hash, cmds
    return {
        "desired_state": (t1 - t) * 1000,
        "hash(state)": (t2 - t1) * 1000,
        "render (build)": (t3 - t2) * 1000,
        "delta (diff of rendered elements)": (t4 - t3) * 1000,
        f"list pub0 addresses ({listed['n']}, pyroute2; full sync, drift check)": listed["s"] * 1000,
    }


def wait_for(what: str, fn: Callable[[], bool], timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def bench_agent(lab: Lab, n: int, rounds: int, secs: float, verbose: bool) -> AgentResult:
    site = make_site(lab, "ag")
    db_url = f"sqlite:///{lab.root}/novanet.sqlite"
    conf = _write_agent_conf(lab, db_url)
    progress(verbose, f"agent: database with {n} instances, each with an associated floating IP")
    t = time.perf_counter()
    ctx, rows = _setup_db(db_url, n, verbose)
    db_setup_s = time.perf_counter() - t
    spare = [F.allocate(ctx, PROJECT)["address"] for _ in range(E2E_SAMPLES)]

    progress(verbose, "agent: starting `novanet agent` in the host namespace")
    novanet = str(Path(sys.executable).with_name("novanet"))
    log = open(lab.root / "agent.log", "w")  # noqa: SIM115 - the child keeps its own copy
    t0 = time.monotonic()
    agent = subprocess.Popen(
        [
            "ip", "netns", "exec", site.host, novanet, "--config-file", str(conf),
            "agent", "--host", HOST, "-v", "--metrics-port", str(METRICS_PORT),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    log.close()
    lab.agents.append(agent)
    libnft = ctypes.util.find_library("nftables") or "libnftables.so.1"
    helper = lab.spawn(site.host, [sys.executable, "-c", HELPER, libnft, str(METRICS_PORT)], "helper")
    assert helper is not None
    last_addr, last_fixed, last_uuid = rows[-1]
    first_addr, first_fixed, first_uuid = rows[0]

    def agent_alive() -> bool:
        if agent.poll() is not None:
            tail = (lab.root / "agent.log").read_text()[-2000:]
            raise BenchError(f"the agent exited ({agent.returncode}):\n{tail}")
        return True

    def present(addr: str) -> bool:
        return bool(helper.ask({"op": "present", "addr": addr})["present"])

    def partial_count() -> float:
        return metric(helper.ask({"op": "metrics"}), "partial", "count")

    wait_for(f"floating IP #{n} in the kernel", lambda: agent_alive() and present(last_addr), 900, 0.05)
    agent_ready_s = time.monotonic() - t0
    wait_for(
        "the agent's first full sync to end",
        lambda: agent_alive() and metric(helper.ask({"op": "metrics"}), "full", "count") >= 1,
        900,
    )
    full_s = metric(helper.ask({"op": "metrics"}), "full", "sum")
    progress(
        verbose,
        f"agent: {n} floating IPs in the kernel after {agent_ready_s:.1f}s, its full sync took {full_s:.1f}s",
    )
    progress(verbose, "agent: plugging 2 instances (`novanet vif plug`)")
    _plug_instances(lab, conf, site.host, [(first_fixed, first_uuid), (last_fixed, last_uuid)])
    for a in (first_addr, last_addr):
        deadline = time.monotonic() + 30
        while True:
            try:
                check_reachable(site, a)
                break
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    progress(verbose, f"agent: {E2E_SAMPLES} x floating associate -> element in the kernel")
    monitor = Monitor(lab, site.host)
    time.sleep(1.0)  # nft monitor subscribes at start
    e2e, service, partial = [], [], []
    for addr in spare:
        time.sleep(0.3)  # the agent idles between samples
        if present(addr):
            raise BenchError(f"{addr} is in the kernel before it was associated")
        before = helper.ask({"op": "metrics"})
        monitor.drain()
        t_start = time.monotonic()
        F.associate(ctx, addr, first_uuid)
        t_done = time.monotonic()
        seen = monitor.wait_for(f"floating-dnat {{ {addr} : ", 120)
        if seen is None or not present(addr):
            raise BenchError(f"{addr} did not appear in floating-dnat within 120s")
        count0 = metric(before, "partial", "count")

        def synced(c: float = count0) -> bool:
            return agent_alive() and partial_count() > c

        wait_for("the agent's partial sync to end", synced, 300, 0.01)
        after = helper.ask({"op": "metrics"})
        e2e.append((seen - t_start) * 1000)
        service.append((t_done - t_start) * 1000)
        partial.append((metric(after, "partial", "sum") - metric(before, "partial", "sum")) * 1000)
    agent_alive()

    breakdown = partial_breakdown(ctx, conf, helper)
    idle_cpu = cpu_share(agent.pid, 5.0)
    agent_alive()
    # The agent leaves the host as it is when stopped: the connections below see the same
    # kernel state, without its polling loop competing for the two CPUs.
    progress(verbose, f"agent: idle CPU {idle_cpu:.1%} of one core; stopping it")
    _end(agent, signal.SIGTERM, 15)
    time.sleep(2.0)  # let its exit settle

    progress(verbose, f"agent: connections/s through floating IP #1 ({first_addr}) and #{n} ({last_addr})")
    runs = [RateRun("first", site, first_addr), RateRun("last", site, last_addr)]
    measure_rates(runs, rounds, secs)

    progress(verbose, "agent: timing `novanet agent check` (full drift check)")
    t = time.perf_counter()
    res = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            site.host,
            novanet,
            "--config-file",
            str(conf),
            "agent",
            "check",
            "--host",
            HOST,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    drift_s = time.perf_counter() - t
    if res.returncode != 0:
        progress(
            verbose, f"agent check reported drift: {res.stdout.strip()[:500]} {res.stderr.strip()[:500]}"
        )
    ctx.engine.dispose()
    return AgentResult(
        floating_ips=n,
        db_setup_s=db_setup_s,
        agent_ready_s=agent_ready_s,
        agent_full_sync_s=full_s,
        e2e_ms=e2e,
        service_ms=service,
        partial_sync_ms=partial,
        breakdown_ms=breakdown,
        rate_first=runs[0].per_s,
        rate_last=runs[1].per_s,
        conn_us_first=runs[0].conn_us,
        conn_us_last=runs[1].conn_us,
        rate_ratio_paired=paired_ratio(runs[0], runs[1]),
        slow_conns=runs[0].slow + runs[1].slow,
        rate_errors=runs[0].errors + runs[1].errors,
        agent_idle_cpu=idle_cpu,
        drift_check_s=drift_s,
        drift_check_ok=res.returncode == 0,
        first_addr=first_addr,
        last_addr=last_addr,
    )


# --- part 1: full sync ----------------------------------------------------------------------------


@dataclass
class FullSyncResult:
    floating_ips: int
    vif_filters: int
    render_s: float
    first_apply_s: float  # tables absent
    replace_apply_s: list[float]  # tables present, replaced in one transaction
    commands_bytes: int


def bench_full_sync(lab: Lab, host: str, n: int) -> FullSyncResult:
    state = synthetic_state(n, n)
    backend = RealNft(host)
    renders: list[float] = []
    applies: list[float] = []
    size = 0
    for _ in range(3):
        nft_render.build.cache_clear()
        fresh = synthetic_state(n, n) if renders else state  # an equal but new object
        t = time.perf_counter()
        cmds = full_sync(fresh)
        renders.append(time.perf_counter() - t)
        size = len(json.dumps({"nftables": cmds}, separators=(",", ":")))
        t = time.perf_counter()
        backend.apply(cmds)
        applies.append(time.perf_counter() - t)
    nft_render.build.cache_clear()
    return FullSyncResult(n, n, statistics.median(renders), applies[0], applies[1:], size)


# --- part 3: baseline vs novanet at several sizes ---------------------------------------------


@dataclass
class SizeResult:
    floating_ips: int
    novanet_change_ms: float  # delta render + nft apply, median of CHANGES
    novanet_render_ms: float
    novanet_apply_ms: float
    baseline_restore_ms: dict[str, float] = field(default_factory=dict)  # text + iptables-restore
    baseline_save_ms: dict[str, float] = field(default_factory=dict)  # iptables-save before it
    rate_last: dict[str, float] = field(default_factory=dict)  # system -> conns/s
    rate_first: dict[str, float] = field(default_factory=dict)  # largest size only
    conn_us_last: dict[str, float] = field(default_factory=dict)  # median time per connection
    conn_us_first: dict[str, float] = field(default_factory=dict)
    paired_ratio: dict[str, float] = field(default_factory=dict)  # novanet / system, per round
    errors: dict[str, int] = field(default_factory=dict)


def novanet_changes(host: str, size: int) -> tuple[float, float, float]:
    """Full sync to size - CHANGES floating IPs, then add the last CHANGES one at a time."""
    backend = RealNft(host)
    nft_render.build.cache_clear()
    prev = synthetic_state(size - CHANGES)
    backend.apply(full_sync(prev))
    totals, renders, applies = [], [], []
    for k in range(size - CHANGES + 1, size + 1):
        new = synthetic_state(k)
        t = time.perf_counter()
        cmds = delta(prev, new)
        t1 = time.perf_counter()
        backend.apply(cmds)
        t2 = time.perf_counter()
        totals.append(t2 - t)
        renders.append(t1 - t)
        applies.append(t2 - t1)
        prev = new
    med = statistics.median
    return med(totals) * 1000, med(renders) * 1000, med(applies) * 1000


def baseline_changes(lab: Lab, host: str, system: str, size: int) -> tuple[float, float]:
    restore, save = IPTABLES[system]
    lab.ex(host, restore, input=nova_nat_table(size - CHANGES), timeout=600)
    restores, saves = [], []
    for k in range(size - CHANGES + 1, size + 1):
        saves.append(timed(["ip", "netns", "exec", host, save, "-t", "nat"], timeout=600))
        t = time.perf_counter()
        text = nova_nat_table(k)  # nova rebuilt the whole table text on every change
        sh(["ip", "netns", "exec", host, restore], input=text, timeout=600)
        restores.append(time.perf_counter() - t)
    rules = lab.ex(host, save, "-t", "nat").count(f"-d {fip(size)}/32 -j DNAT")
    if rules != 2:
        raise BenchError(f"{system}: {rules} DNAT rules for {fip(size)} after the restore, expected 2")
    return statistics.median(restores) * 1000, statistics.median(saves) * 1000


def bench_sizes(
    lab: Lab, sites: dict[str, Site], sizes: list[int], rounds: int, secs: float, verbose: bool
) -> list[SizeResult]:
    out = []
    for size in sizes:
        progress(verbose, f"sizes: {size} floating IPs: novanet delta")
        total, render, apply = novanet_changes(sites["novanet"].host, size)
        r = SizeResult(size, total, render, apply)
        for system in IPTABLES:
            progress(verbose, f"sizes: {size} floating IPs: {system} whole-table rewrite")
            r.baseline_restore_ms[system], r.baseline_save_ms[system] = baseline_changes(
                lab, sites[system].host, system, size
            )
        for site in sites.values():
            check_reachable(site, fip(size))
        progress(verbose, f"sizes: {size} floating IPs: connections/s through the last one")
        runs = [RateRun(name, site, fip(size)) for name, site in sites.items()]
        if size == max(sizes):
            runs += [RateRun(f"{name}#1", site, fip(1)) for name, site in sites.items()]
        measure_rates(runs, rounds, secs)
        for run in runs[1 : len(sites)]:
            r.paired_ratio[run.label] = paired_ratio(run, runs[0])
        for run in runs:
            if run.label.endswith("#1"):
                r.rate_first[run.label[:-2]] = run.per_s
                r.conn_us_first[run.label[:-2]] = run.conn_us
            else:
                r.rate_last[run.label] = run.per_s
                r.conn_us_last[run.label] = run.conn_us
            r.errors[run.label] = run.errors
        out.append(r)
    return out


# --- reporting --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for tool, argv in {"nft": ["nft", "--version"], "iptables": ["iptables-legacy", "--version"]}.items():
        with contextlib.suppress(OSError, BenchError):
            versions[tool] = sh(argv, check=False).strip()
    repo = str(Path(__file__).resolve().parents[1])
    with contextlib.suppress(OSError, BenchError):
        commit = sh(["git", "-C", repo, "rev-parse", "--short", "HEAD"], check=False).strip()
        dirty = sh(["git", "-C", repo, "status", "--porcelain", "--", "src"], check=False).strip()
        versions["novanet"] = f"{commit}{' + uncommitted changes in src/' if dirty else ''}"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "os": os_name,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        **versions,
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def verdicts(agent: AgentResult | None, full: FullSyncResult | None) -> dict[str, bool]:
    out: dict[str, bool] = {}
    if agent is not None:
        out[f"associate -> kernel (median) < {TARGET_E2E_MS:g} ms"] = (
            statistics.median(agent.e2e_ms) < TARGET_E2E_MS
        )
        dev = TARGET_RATIO_DEVIATION
        out[f"conns/s #N / #1 (paired slices) within {dev:.0%}"] = abs(1 - agent.rate_ratio_paired) <= dev
        us = agent.conn_us_last / agent.conn_us_first if agent.conn_us_first else 0.0
        out[f"time per connection #N / #1 within {dev:.0%}"] = abs(1 - us) <= dev
    if full is not None:
        worst = max([full.first_apply_s, *full.replace_apply_s]) + full.render_s
        out[f"full sync < {TARGET_FULL_SYNC_S:g} s"] = worst < TARGET_FULL_SYNC_S
    return out


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def report(
    m: dict[str, Any], agent: AgentResult | None, full: FullSyncResult | None, sizes: list[SizeResult]
) -> str:
    out = [
        f"novanet host NAT benchmark, {m['date']}: {m['cpus']} CPUs ({m['cpu']}), {m['os']},"
        f" kernel {m['kernel']}, {m.get('nft', '')}, {m.get('iptables', '')},"
        f" novanet {m.get('novanet', '?')};"
        f" load average {m['load_before']:.1f} before, {m['load_after']:.1f} after",
        "",
    ]
    if agent is not None:
        a = agent
        med = statistics.median
        ratio = a.rate_last / a.rate_first if a.rate_first else 0.0
        out += [
            f"1. Real agent, SQLite, {a.floating_ips} floating IPs associated on the host",
            table(
                [
                    ("", "value"),
                    ("database setup (instances + floating IPs, s)", f"{a.db_setup_s:.1f}"),
                    ("agent start -> last floating IP in the kernel (s)", f"{a.agent_ready_s:.2f}"),
                    ("agent's first full sync (its metric, s)", f"{a.agent_full_sync_s:.2f}"),
                    (
                        f"associate -> element in kernel, ms (median / p90 / max of {len(a.e2e_ms)})",
                        f"{med(a.e2e_ms):.1f} / {pct(a.e2e_ms, 0.9):.1f} / {max(a.e2e_ms):.1f}",
                    ),
                    (
                        "  of which the service call (associate + commit), ms median",
                        f"{med(a.service_ms):.1f}",
                    ),
                    (
                        "agent partial sync (its metric), ms median / max",
                        f"{med(a.partial_sync_ms):.1f} / {max(a.partial_sync_ms):.1f}",
                    ),
                    *((f"  breakdown: {k} (ms)", f"{v:.1f}") for k, v in a.breakdown_ms.items()),
                    ("agent CPU while idle (share of one core)", f"{a.agent_idle_cpu:.1%}"),
                    (
                        "full drift check `novanet agent check` (s)",
                        f"{a.drift_check_s:.2f}" + ("" if a.drift_check_ok else " (drift!)"),
                    ),
                ]
            ),
            "",
            "2. First-packet cost through the agent's host: new TCP connections (connect + recv +"
            f" close), median of the slices; errors: {a.rate_errors},"
            f" connections over 10 ms: {a.slow_conns}",
            table(
                [
                    ("", "conns/s", "us/conn"),
                    (f"floating IP #1 ({a.first_addr})", f"{a.rate_first:.0f}", f"{a.conn_us_first:.0f}"),
                    (
                        f"floating IP #{a.floating_ips} ({a.last_addr})",
                        f"{a.rate_last:.0f}",
                        f"{a.conn_us_last:.0f}",
                    ),
                    (
                        f"ratio #{a.floating_ips} / #1",
                        f"{ratio:.3f}",
                        f"{a.conn_us_last / a.conn_us_first:.3f}" if a.conn_us_first else "-",
                    ),
                    (f"ratio #{a.floating_ips} / #1, paired slices", f"{a.rate_ratio_paired:.3f}", ""),
                ]
            ),
            "",
        ]
    if full is not None:
        out += [
            f"1b. Full sync: {full.floating_ips} floating IPs + {full.vif_filters} VIF filters,"
            f" one `nft -j -f -` transaction of {full.commands_bytes / 1e6:.1f} MB",
            table(
                [
                    ("", "s"),
                    ("render (full_sync(state))", f"{full.render_s:.2f}"),
                    ("apply, tables absent", f"{full.first_apply_s:.2f}"),
                    ("apply, replacing the tables", " / ".join(f"{x:.2f}" for x in full.replace_apply_s)),
                ]
            ),
            "",
        ]
    if sizes:
        out += [
            "3. nova-network's whole nat table rewritten by iptables-restore vs novanet's element delta"
            f" (per change: add one floating IP, median of {CHANGES}); connections through the last one",
            table(size_rows(sizes)),
            f"   connection errors: {sum(sum(s.errors.values()) for s in sizes)}",
            "",
        ]
    v = verdicts(agent, full)
    out += [f"target: {k}: {'met' if ok else 'MISSED'}" for k, ok in v.items()]
    return "\n".join(out)


def size_rows(sizes: list[SizeResult]) -> list[tuple[str, ...]]:
    Cell = Callable[[SizeResult, str], str]

    def row(label: str, fn: Cell, key: str = "") -> tuple[str, ...]:
        return (label, *(fn(s, key) for s in sizes))

    def first(s: SizeResult, k: str) -> str:
        return f"{s.rate_first[k]:.0f} ({s.conn_us_first[k]:.0f})" if k in s.rate_first else "-"

    def paired(s: SizeResult, k: str) -> str:
        extra = f" ({s.paired_ratio[k]:.2f}x)" if k in s.paired_ratio else ""
        return f"{s.rate_last['novanet'] / s.rate_last[k]:.2f}x{extra}"

    rows = [
        row("floating IPs", lambda s, k: str(s.floating_ips)),
        row("novanet change: delta + nft (ms)", lambda s, k: f"{s.novanet_change_ms:.1f}"),
        row(
            "  render / nft apply (ms)", lambda s, k: f"{s.novanet_render_ms:.1f} / {s.novanet_apply_ms:.1f}"
        ),
    ]
    for sy in IPTABLES:
        rows += [
            row(f"{sy} change: rewrite table (ms)", lambda s, k: f"{s.baseline_restore_ms[k]:.0f}", sy),
            row(f"  {IPTABLES[sy][1]} before it (ms)", lambda s, k: f"{s.baseline_save_ms[k]:.0f}", sy),
            row(
                f"  {sy} / novanet", lambda s, k: f"{s.baseline_restore_ms[k] / s.novanet_change_ms:.1f}x", sy
            ),
        ]
    conns: Cell = lambda s, k: f"{s.rate_last[k]:.0f} ({s.conn_us_last[k]:.0f})"  # noqa: E731
    rows.append(row("novanet conns/s (us/conn)", conns, "novanet"))
    for sy in IPTABLES:
        rows += [
            row(f"{sy} conns/s (us/conn)", conns, sy),
            row(f"  novanet / {sy} conns/s (paired slices)", paired, sy),
        ]
    for name in ("novanet", *IPTABLES):
        rows.append(row(f"{name} via floating IP #1: conns/s (us/conn)", first, name))
    return rows


def as_json(
    m: dict[str, Any],
    args: argparse.Namespace,
    agent: AgentResult | None,
    full: FullSyncResult | None,
    sizes: list[SizeResult],
) -> dict[str, Any]:
    from dataclasses import asdict

    doc: dict[str, Any] = {
        "machine": m,
        "quick": args.quick,
        "targets": {
            "e2e_ms_below": TARGET_E2E_MS,
            "full_sync_s_below": TARGET_FULL_SYNC_S,
            "rate_ratio_deviation_at_most": TARGET_RATIO_DEVIATION,
        },
        "method": {
            "rate_rounds": args.rounds,
            "rate_slice_s": args.secs,
            "changes_per_size": CHANGES,
            "e2e_samples": E2E_SAMPLES,
            "baselines": {k: v[0] for k, v in IPTABLES.items()},
        },
        "agent": None,
        "full_sync": asdict(full) if full else None,
        "sizes": [asdict(s) for s in sizes],
        "targets_met": verdicts(agent, full),
    }
    if agent is not None:
        a = asdict(agent)
        a["e2e_ms_median"] = statistics.median(agent.e2e_ms)
        a["partial_sync_ms_median"] = statistics.median(agent.partial_sync_ms)
        a["rate_ratio_last_first"] = agent.rate_last / agent.rate_first if agent.rate_first else None
        doc["agent"] = a
    return doc


def from_json(
    doc: dict[str, Any],
) -> tuple[dict[str, Any], AgentResult | None, FullSyncResult | None, list[SizeResult]]:
    def load(cls: Any, obj: dict[str, Any] | None) -> Any:
        if obj is None:
            return None
        return cls(**{k: v for k, v in obj.items() if k in cls.__dataclass_fields__})

    sizes = [load(SizeResult, s) for s in doc["sizes"]]
    return doc["machine"], load(AgentResult, doc["agent"]), load(FullSyncResult, doc["full_sync"]), sizes


# --- main ------------------------------------------------------------------------------------


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmark creates network namespaces")
    for tool in ("ip", "nft", "ss", *(v[0] for v in IPTABLES.values()), *(v[1] for v in IPTABLES.values())):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is missing")
    if not Path(sys.executable).with_name("novanet").exists():
        raise BenchError(f"no novanet next to {sys.executable}: run with the project's .venv/bin/python")


def run(args: argparse.Namespace) -> tuple[AgentResult | None, FullSyncResult | None, list[SizeResult]]:
    verbose = not args.quiet
    lab = Lab(verbose)
    agent = full = None
    sizes: list[SizeResult] = []
    try:
        if not args.skip_agent:
            agent = bench_agent(lab, args.floating, args.rounds, args.secs, verbose)
            for p in lab.agents:  # its CPU (polling every 10 ms) stays out of the rest
                _end(p, signal.SIGTERM, 15)
        progress(verbose, "sites: novanet, iptables-legacy and iptables-nft hosts, same topology")
        sites: dict[str, Site] = {}
        for name, tag in (("novanet", "nn"), ("iptables-legacy", "lg"), ("iptables-nft", "nf")):
            sites[name] = make_site(lab, tag)
            add_synthetic_instance(lab, sites[name])
        progress(verbose, f"full sync: {args.floating} floating IPs + {args.floating} VIF filters")
        full = bench_full_sync(lab, sites["novanet"].host, args.floating)
        sizes = bench_sizes(lab, sites, args.sizes, args.rounds, args.secs, verbose)
    finally:
        progress(verbose, "cleaning up: processes, namespaces, files")
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in signals}  # no second interrupt
        try:
            lab.close()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
    return agent, full, sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: sizes 100/1000, shorter rate runs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--skip-agent", action="store_true", help="leave out parts 1-2 (the real agent)")
    p.add_argument(
        "--render", metavar="FILE", help="print the tables of a saved --json result (measures nothing)"
    )
    args = p.parse_args(argv)
    if args.render:
        m, agent, full, sizes = from_json(json.loads(Path(args.render).read_text()))
        print(report(m, agent, full, sizes))
        return 0
    args.sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    args.floating = max(args.sizes)
    args.rounds, args.secs = (10, 0.1) if args.quick else (40, 0.1)

    def _interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    # even when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    load_before = os.getloadavg()[0]
    try:
        preflight()
        sweep()
        agent, full, sizes = run(args)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"hostnat benchmark: interrupted ({str(exc) or 'Ctrl-C'}); cleaned up", file=sys.stderr)
        return 130
    except (BenchError, OSError, subprocess.SubprocessError, sa.exc.SQLAlchemyError) as exc:
        print(f"hostnat benchmark: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    m = {**machine(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(as_json(m, args, agent, full, sizes), indent=2))
    else:
        print(report(m, agent, full, sizes))
    return 0 if all(verdicts(agent, full).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
