"""A lab of namespaces for agent tests: an outside network, hosts running real agents,
instances plugged by `novanet vif plug`, a real SQLite database and real dnsmasq.

Everything lives in namespaces the test made; processes started here are ended here, by
their PID (agents) or by the PID in their pid file after checking /proc (dnsmasq).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nslab import Netns, World, sh

NOVANET = str(Path(sys.executable).with_name("novanet"))
PYTHON = sys.executable
T = TypeVar("T")

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script: configure the lease the way a guest would.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    echo "$ip" > "$LEASE_OUT" ;;
esac
exit 0
"""


def floating_local(ns: Netns, dev: str | None = None) -> set[str]:
    """Floating IPs the agent made local in ``ns`` (on ``dev``): its routes of type local
    in table local, protocol 78, read with `ip -j route`."""
    where = ["dev", dev] if dev else []
    out = ns.run("ip", "-j", "-4", "route", "show", "table", "local", "proto", "78", "type", "local", *where)
    return {str(r["dst"]) for r in json.loads(out or "[]")}


def eventually(fn: Callable[[], T], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, subprocess.SubprocessError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last {last!r}")


def udhcpc(vm: Netns, iface: str, tries: int, script: Path, out: Path) -> None:
    """One real DHCP exchange (busybox udhcpc, in the foreground, quitting after the
    lease); ``script`` writes what it got to ``out`` (passed as LEASE_OUT)."""
    out.unlink(missing_ok=True)
    vm.run(
        "env", f"LEASE_OUT={out}", "busybox", "udhcpc", "-i", iface, "-n", "-q", "-f",
        "-t", str(tries), "-T", "1", "-s", str(script),
        check=False, timeout=tries * 3 + 10,
    )  # fmt: skip


@dataclass
class Lab:
    world: World
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="novanet-lab-")))
    agents: list[subprocess.Popen[str]] = field(default_factory=list)
    helpers: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # dnsmasq reads its files after dropping privileges: every directory must be
        # traversable by others.
        self.root.chmod(0o755)
        self.db_url = f"sqlite:///{self.root}/novanet.sqlite"
        (self.root / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
        (self.root / "udhcpc.sh").chmod(0o755)

    # --- configuration and CLI --------------------------------------------------------

    def config(self, name: str, **options: Any) -> Path:
        path = self.root / f"{name}.conf"
        lines = ["[DEFAULT]", f"state_path = {self.root}/state-{name}"]
        lines += [f"{k} = {v}" for k, v in options.items()]
        lines += ["[database]", f"connection = {self.db_url}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def cli(self, conf: Path, *args: str, ns: Netns | None = None, check: bool = True) -> str:
        argv = [NOVANET, "--config-file", str(conf), *args]
        if ns is not None:
            return ns.run(*argv, check=check, timeout=60)
        return sh(argv, check=check, timeout=60)

    def cli_json(self, conf: Path, *args: str) -> Any:
        return json.loads(self.cli(conf, *args, "--json"))

    # --- agents ---------------------------------------------------------------------

    def start_agent(self, ns: Netns, conf: Path, host: str) -> subprocess.Popen[str]:
        with open(self.root / f"agent-{host}.log", "a") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns.name,
                    NOVANET,
                    "--config-file",
                    str(conf),
                    "agent",
                    "--host",
                    host,
                    "-v",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.agents.append(proc)
        return proc

    def agent_log(self, host: str) -> str:
        p = self.root / f"agent-{host}.log"
        return p.read_text() if p.exists() else ""

    def stop_agent(self, proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    # --- instances ------------------------------------------------------------------

    def dhcp(self, vm: Netns, iface: str = "eth0", tries: int = 10) -> str | None:
        out = self.root / f"lease-{vm.name}-{iface}"
        udhcpc(vm, iface, tries, self.root / "udhcpc.sh", out)
        return out.read_text().strip() if out.exists() else None

    def listen(self, ns: Netns, port: int) -> Path:
        """A TCP server in ``ns`` that records each peer's address, one per line."""
        out = self.root / f"peers-{ns.name}-{port}"
        out.write_text("")
        code = textwrap.dedent(
            f"""
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", {port})); s.listen(16); s.settimeout(120)
            while True:
                c, peer = s.accept()
                with open({str(out)!r}, "a") as f:
                    f.write(peer[0] + "\\n")
                c.sendall(b"ok"); c.close()
            """
        )
        proc = ns.popen(PYTHON, "-c", code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.helpers.append(proc)
        eventually(lambda: ns.ok("sh", "-c", f"ss -ltn | grep -q ':{port} '"), 10, what=f"listener :{port}")
        return out

    def connect(self, ns: Netns, address: str, port: int, timeout: float = 2.0) -> bool:
        code = (
            "import socket,sys\n"
            f"s=socket.create_connection(({address!r},{port}),timeout={timeout})\n"
            "sys.exit(0 if s.recv(2)==b'ok' else 1)\n"
        )
        return ns.ok(PYTHON, "-c", code, timeout=timeout + 10)

    # --- teardown -------------------------------------------------------------------

    def close(self) -> None:
        for proc in self.agents:
            self.stop_agent(proc)
        for proc in self.helpers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for pid_file in self.root.glob("state-*/networks/*/*/pid"):
            _stop_dnsmasq(pid_file)
        shutil.rmtree(self.root, ignore_errors=True)


def _stop_dnsmasq(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if cmdline and cmdline[0].endswith(b"dnsmasq") and any(str(pid_file).encode() in a for a in cmdline):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
