"""The cloudpipe VPN appliance the agent runs for each project it serves.

An appliance is a network namespace ``nnvpn-<id>`` plugged into the project's bridge by
a veth pair (``nvpn<id>`` on the bridge, ``eth0`` inside), with a bridge ``br0`` inside
joining ``eth0`` and a persistent tap ``tap0`` that OpenVPN serves in tap mode. ``br0``
holds the project's vpn_private_address, with a default route through the network's
gateway (the replies to clients DNATed in from ``vpn_public_address:port``).

The state of each appliance lives under ``$state_path/vpn/<namespace>/`` (server.conf,
pid, log): only namespaces with such a directory are ours to stop. Commands are
argument lists (``ip``, ``openvpn``), never shell strings; every name is validated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Protocol

from novanet.config import Config
from novanet.domain import names
from novanet.domain.errors import InvalidInput, NovanetError
from novanet.host.model import VpnAppliance
from novanet.vpn import render

log = logging.getLogger("novanet.agent.vpn")

PREFIX = "nnvpn-"
TAP = "tap0"
INNER = "eth0"
INNER_BRIDGE = "br0"


class Appliances(Protocol):
    """What the agent needs of the VPN appliances: converge, probe, report."""

    def sync(self, wanted: Iterable[VpnAppliance]) -> dict[str, str]:
        """Start what is missing or dead, stop what is not wanted; errors by port."""
        ...

    def running(self, app: VpnAppliance) -> bool: ...

    def maintain(self, wanted: Iterable[VpnAppliance]) -> None:
        """Periodic upkeep of running appliances (the CRL signed again in time)."""
        ...

    def check(self, wanted: Iterable[VpnAppliance]) -> list[str]: ...


class ApplianceError(NovanetError):
    code = "vpnApplianceFailed"


def _run(argv: list[str], timeout: float = 20) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplianceError(f"{argv[0]}: {exc}") from None
    if proc.returncode != 0:
        raise ApplianceError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


@dataclass
class ApplianceManager:
    """The real appliances: namespaces, veth, bridge and tap by ``ip``, OpenVPN daemons."""

    cfg: Config
    run_dir: Path
    openvpn: str = "openvpn"
    started: dict[str, int] = field(default_factory=dict)  # namespace -> openvpn pid

    def _dir(self, ns: str) -> Path:
        return self.run_dir / ns

    # --- probing ------------------------------------------------------------------------

    def _pid(self, ns: str) -> int | None:
        d = self._dir(ns)
        try:
            pid = int((d / "pid").read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        conf = str(d / "server.conf").encode()
        if argv and argv[0].endswith(b"openvpn") and conf in argv:
            return pid
        return None

    def running(self, app: VpnAppliance) -> bool:
        return self._pid(app.namespace) is not None

    def _namespaces(self) -> set[str]:
        out = _run(["ip", "-j", "netns", "list"]) or "[]"
        return {n["name"] for n in json.loads(out) if n["name"].startswith(PREFIX)}

    def _link(self, name: str, ns: str | None = None) -> dict[str, object] | None:
        argv = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", "dev", name]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        if proc.returncode != 0:
            return None
        found = json.loads(proc.stdout or "[]")
        return found[0] if found else None

    # --- converging ---------------------------------------------------------------------

    def sync(self, wanted: Iterable[VpnAppliance]) -> dict[str, str]:
        errors: dict[str, str] = {}
        want = {a.namespace: a for a in wanted}
        for ns, app in sorted(want.items()):
            try:
                self.ensure(app)
            except (NovanetError, OSError, ValueError) as exc:
                errors[app.port] = str(exc)
                log.error("VPN appliance of project %s (%s): %s", app.project, ns, exc)
        ours = {p.name for p in self.run_dir.glob(PREFIX + "*")} if self.run_dir.is_dir() else set()
        for ns in sorted(ours - set(want)):  # only what has our run directory
            self.stop(ns)
        return errors

    def _namespace(self, ns: str) -> None:
        """``ns`` usable by name. A name whose mount is gone (made by an agent that ran in
        a mount namespace of its own, as under `ip netns exec`, and has exited) is bound
        again to the namespace its running server holds, or made anew."""
        if (
            subprocess.run(
                ["ip", "-n", ns, "link", "show", "lo"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            return
        pid = self._pid(ns)
        if ns in self._namespaces():
            _run(["ip", "netns", "del", ns])
        if pid is not None:
            _run(["ip", "netns", "attach", ns, str(pid)])
        else:
            _run(["ip", "netns", "add", ns])

    def ensure(self, app: VpnAppliance) -> None:
        """The appliance of ``app`` plugged and serving (idempotent; restarts a dead server)."""
        from novanet.vpn import certs

        ns = app.namespace
        names.interface_name(app.port, "VPN appliance port")
        names.interface_name(app.bridge, "bridge")
        prefix = IPv4Network(app.cidr).prefixlen
        p = certs.paths(self.cfg, app.project)
        for f in (p.ca_cert, p.server_cert, p.server_key, p.crl):
            if not f.exists():
                raise InvalidInput(
                    f"{f} is missing: run `novanet vpn create --project {app.project}` on this host"
                )
        if certs.refresh_crl(self.cfg, p):
            log.info("CRL %s signed again (same entries)", p.crl)
        d = self._dir(ns)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._namespace(ns)
        # no IPv6 chatter (link-local, router solicitations) for the bridge filter to drop
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1"])  # fmt: skip
        if self._link(INNER, ns) is None:
            # a port left by a namespace that died (its deletion is asynchronous) goes first
            subprocess.run(["ip", "link", "del", app.port], capture_output=True, check=False)
            _run(["ip", "link", "add", app.port, "type", "veth", "peer", "name", INNER, "netns", ns])
        _run(["ip", "link", "set", app.port, "master", app.bridge, "up"])
        inside = ["ip", "-n", ns]
        if self._link(INNER_BRIDGE, ns) is None:
            _run(
                [
                    *inside,
                    "link",
                    "add",
                    INNER_BRIDGE,
                    "address",
                    app.mac,
                    "type",
                    "bridge",
                    "forward_delay",
                    "0",
                ]
            )
        if self._link(TAP, ns) is None:
            _run([*inside, "tuntap", "add", "dev", TAP, "mode", "tap"])
        for dev in (INNER, TAP):
            _run([*inside, "link", "set", dev, "master", INNER_BRIDGE, "up"])
        _run([*inside, "link", "set", "lo", "up"])
        _run([*inside, "link", "set", INNER_BRIDGE, "up"])
        _run([*inside, "addr", "replace", f"{app.vpn_address}/{prefix}", "dev", INNER_BRIDGE])
        _run([*inside, "route", "replace", "default", "via", app.gateway])
        if self._pid(ns) is not None:
            return
        spec = render.ServerSpec(
            project=app.project,
            cidr=app.cidr,
            vpn_address=app.vpn_address,
            gateway=app.gateway,
            pool_start=app.pool_start,
            pool_end=app.pool_end,
            tap=TAP,
        )
        conf = d / "server.conf"
        conf.write_text(
            render.server_config(
                spec,
                ca=str(p.ca_cert),
                cert=str(p.server_cert),
                key=str(p.server_key),
                crl=str(p.crl),
                status_file=str(d / "status"),
            )
        )
        (d / "pid").unlink(missing_ok=True)
        _run(
            [
                "ip", "netns", "exec", ns, self.openvpn, "--config", str(conf),
                "--daemon", f"novanet-vpn-{ns}", "--writepid", str(d / "pid"), "--log-append", str(d / "log"),
            ]
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while self._pid(ns) is None:
            if time.monotonic() > deadline:
                raise ApplianceError(f"openvpn of {ns} did not start; see {d / 'log'}")
            time.sleep(0.05)
        log.info("VPN appliance of project %s started in %s (pid %s)", app.project, ns, self._pid(ns))

    def maintain(self, wanted: Iterable[VpnAppliance]) -> None:
        from novanet.vpn import certs

        for app in wanted:
            try:
                if certs.refresh_crl(self.cfg, certs.paths(self.cfg, app.project)):
                    log.info("CRL of project %s signed again (same entries)", app.project)
            except (NovanetError, OSError, ValueError) as exc:
                log.error("CRL of project %s: %s", app.project, exc)

    def stop(self, ns: str) -> None:
        """Stop the server of ``ns`` and remove the namespace (with its veth pair)."""
        if not ns.startswith(PREFIX):
            return
        pid = self._pid(ns)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ApplianceError):
            if ns in self._namespaces():
                _run(["ip", "netns", "del", ns])
        shutil.rmtree(self._dir(ns), ignore_errors=True)
        log.info("VPN appliance %s stopped", ns)

    def check(self, wanted: Iterable[VpnAppliance]) -> list[str]:
        wanted = list(wanted)
        if not wanted:
            return []
        out = []
        try:
            present = self._namespaces()
        except NovanetError as exc:
            return [f"cannot list namespaces: {exc}"]
        for app in wanted:
            ns = app.namespace
            if ns not in present:
                out.append(f"appliance of project {app.project}: namespace {ns} is missing")
                continue
            port = self._link(app.port)
            if port is None or port.get("master") != app.bridge:
                out.append(f"appliance of project {app.project}: port {app.port} is not on {app.bridge}")
            if not self.running(app):
                out.append(f"appliance of project {app.project}: openvpn is not running")
        return out


@dataclass
class FakeAppliances:
    """Appliances as data: what runs, and a switch to make one die."""

    up: dict[str, VpnAppliance] = field(default_factory=dict)  # port -> appliance
    broken: set[str] = field(default_factory=set)  # ports whose start fails
    starts: int = 0
    maintained: list[str] = field(default_factory=list)

    def sync(self, wanted: Iterable[VpnAppliance]) -> dict[str, str]:
        want = {a.port: a for a in wanted}
        errors = {}
        for port, app in want.items():
            if port in self.broken:
                errors[port] = "broken"
                self.up.pop(port, None)
            elif self.up.get(port) != app:
                self.up[port] = app
                self.starts += 1
        for port in set(self.up) - set(want):
            del self.up[port]
        return errors

    def running(self, app: VpnAppliance) -> bool:
        return self.up.get(app.port) == app

    def maintain(self, wanted: Iterable[VpnAppliance]) -> None:
        self.maintained = [a.port for a in wanted]

    def kill(self, port: str) -> None:
        self.up.pop(port, None)

    def check(self, wanted: Iterable[VpnAppliance]) -> list[str]:
        return [
            f"appliance of project {a.project}: openvpn is not running" for a in wanted if not self.running(a)
        ]

    def dump(self) -> list[str]:
        return sorted(self.up)
