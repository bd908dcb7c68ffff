"""Build, describe and tear down a sandbox.

Everything the sandbox makes is recorded in ``$state_path/sandbox/NAME/state.json`` as it
is made (namespaces, processes with their start times), so `down` -- or the clean-up of
an `up` that failed halfway -- removes exactly that: the processes by PID, the
namespaces (their links, bridges, taps and nftables tables go with them), and the state
directory. Nothing is created in the root namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from novanet.domain.errors import Conflict, InvalidInput, NotFound
from novanet.sandbox import procs
from novanet.sandbox import topology as T
from novanet.sandbox.procs import SandboxError, in_ns, ns_ok, run

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script of a sandbox instance: configure the lease as a guest would.
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

Say = Callable[[str], None]


def novanet_exe() -> str:
    exe = Path(sys.executable).with_name("novanet")
    if exe.exists():
        return str(exe)
    found = shutil.which("novanet")
    if found is None:
        raise SandboxError("the novanet command is not on PATH")
    return found


def sandbox_root(state_path: str, name: str) -> Path:
    return Path(state_path) / "sandbox" / T.check_name(name)


class Fatal(SandboxError):
    """A failure no waiting can cure (a process that exited): stop waiting at once."""


def _wait(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Fatal:
            raise
        except SandboxError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r:.200})")


@dataclass
class Sandbox:
    root: Path
    state: dict[str, Any] = field(default_factory=dict)
    say: Say = field(default=lambda _m: None)

    # --- state file -------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        # 0600: with --db it holds the PostgreSQL URL and its password.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, root: Path, say: Say | None = None) -> Sandbox:
        try:
            state = json.loads((root / "state.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no sandbox {root.name} (nothing under {root})") from None
        except ValueError:
            raise SandboxError(f"{root}/state.json is not valid JSON: remove the sandbox by hand") from None
        return cls(root, state, say or (lambda _m: None))

    @property
    def plan(self) -> T.Plan:
        return T.Plan.from_json(self.state["plan"])

    def conf(self, host: str) -> Path:
        return self.root / f"{host}.conf"

    # --- novanet ------------------------------------------------------------------------

    def nv(self, *args: str, host: str = "net", ns: str | None = None, timeout: float = 120) -> str:
        argv = [novanet_exe(), "--config-file", str(self.conf(host)), *args]
        if ns is not None:
            return in_ns(ns, *argv, timeout=timeout)
        return run(argv, timeout=timeout)

    def nv_json(self, *args: str, host: str = "net") -> Any:
        return json.loads(self.nv(*args, "--json", host=host))

    # --- up -------------------------------------------------------------------------------

    def up(self, p: T.Plan, guest_cache: Path | None = None) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("namespaces and wiring", lambda: self._wire(p)),
            ("database, networks and floating IPs", lambda: self._control(p)),
            ("agents", lambda: self._agents(p)),
            ("instances", lambda: self._instances(p, guest_cache)),
            ("floating IPs", lambda: self._floating(p)),
        ]
        if p.mode.vlan:
            steps.append(("the project's VPN (cloudpipe)", lambda: self._vpn(p)))
        t0 = time.monotonic()
        # For the tests of the clean-up: fail on purpose after this many steps.
        fail_after = int(os.environ.get("NOVANET_SANDBOX_FAIL_AFTER", "0") or 0)
        for i, (what, fn) in enumerate(steps, 1):
            self.say(f"[{i}/{len(steps)}] {what}")
            fn()
            self.save()
            if i == fail_after:
                raise SandboxError(f"failing after step {i} ({what}) as NOVANET_SANDBOX_FAIL_AFTER asks")
        self.state["status"] = "up"
        self.state["build_seconds"] = round(time.monotonic() - t0, 1)
        self.save()

    def _add_ns(self, name: str) -> None:
        if name in procs.namespaces():
            raise Conflict(f"namespace {name} already exists: `novanet sandbox down --name` first")
        run(["ip", "netns", "add", name])
        self.state["namespaces"].append(name)
        self.save()
        in_ns(name, "ip", "link", "set", "lo", "up")

    def _veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        in_ns(a, "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
        in_ns(a, "ip", "link", "set", a_if, "up")
        in_ns(b, "ip", "link", "set", b_if, "up")

    def _wire(self, p: T.Plan) -> None:
        for ns in [p.outside_ns, p.underlay_ns] + [h.ns for h in p.hosts]:
            self._add_ns(ns)
        out, und = p.outside_ns, p.underlay_ns
        for ns, br in ((out, "obr"), (und, "ubr")):
            in_ns(ns, "ip", "link", "add", br, "type", "bridge")
            in_ns(ns, "ip", "link", "set", br, "up")
        in_ns(out, "ip", "addr", "add", f"{T.OUTSIDE_IP}/24", "dev", "obr")
        for h in p.hosts:
            self._veth(h.ns, "pub0", out, f"o-{h.name}")
            in_ns(out, "ip", "link", "set", f"o-{h.name}", "master", "obr")
            in_ns(h.ns, "ip", "addr", "add", f"{h.public_ip}/24", "dev", "pub0")
            self._veth(h.ns, "und0", und, f"u-{h.name}")
            in_ns(und, "ip", "link", "set", f"u-{h.name}", "master", "ubr")
            if p.mode.vlan and p.segmentation == "vxlan":
                in_ns(h.ns, "ip", "addr", "add", f"{h.underlay_ip}/24", "dev", "und0")

    def _control(self, p: T.Plan) -> None:
        pg = self.state.get("pg_server")
        db = self._postgresql(p, pg) if pg else f"sqlite:///{self.root}/novanet.sqlite"
        self.state["db"] = "postgresql" if pg else db
        for h in p.hosts:
            (self.root / "hosts" / h.name).mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(self.conf(h.name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(T.host_config(p, h, self.root, db))
        self.nv("db", "sync")
        args = ["network", "create", "--label", "demo", "--fixed-range-v4", T.FIXED_RANGE]
        args += ["--multi-host", "T" if p.multi_host else "F", "--dns1", T.OUTSIDE_IP]
        if p.mode.vlan:
            args += ["--project-id", "demo", "--vlan", str(T.VLAN_START)]
        [net] = self.nv_json(*args)
        self.state["network"] = net
        self.nv("floating", "create", "--ip-range", T.FLOATING_RANGE, "--interface", "pub0")

    def _postgresql(self, p: T.Plan, server: str) -> str:
        """A database of the sandbox's own on the PostgreSQL server, reached from the
        namespaces through a Unix-socket relay; returns the URL the hosts use."""
        import sqlalchemy as sa
        from sqlalchemy.engine import URL, make_url
        from sqlalchemy.pool import NullPool

        url = make_url(server)
        if url.get_backend_name() != "postgresql":
            raise InvalidInput("--db must be a postgresql+psycopg:// URL (the default is SQLite)")
        dbname = f"novanet_sandbox_{p.name}"
        admin = sa.create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                                 poolclass=NullPool)  # fmt: skip
        try:
            with admin.connect() as conn:
                if conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": dbname}
                ).first():
                    raise Conflict(
                        f"database {dbname} already exists on the server: drop it or choose another --name"
                    )
                conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
        except sa.exc.SQLAlchemyError as exc:
            raise SandboxError(
                f"PostgreSQL: {str(exc.orig if hasattr(exc, 'orig') else exc).strip()[:200]}"
            ) from None
        finally:
            admin.dispose()
        self.state["pg_database"] = dbname
        self.save()
        sockdir = self.root / "pg"
        sockdir.mkdir(mode=0o700, exist_ok=True)
        port = url.port or 5432
        sock = sockdir / f".s.PGSQL.{port}"
        argv = [
            sys.executable,
            "-m",
            "novanet.sandbox.pgrelay",
            str(sock),
            url.host or "127.0.0.1",
            str(port),
        ]
        rec = procs.spawn(argv, self.root / "pgrelay.log")
        rec["what"] = "postgresql relay"
        self.state["processes"].append(rec)
        self.save()
        _wait(sock.exists, 10, "the PostgreSQL relay socket")
        local = URL.create(
            "postgresql+psycopg", username=url.username, password=url.password, database=dbname,
            query={"host": str(sockdir), "port": str(port)},
        )  # fmt: skip
        return local.render_as_string(hide_password=False)

    def _drop_postgresql(self) -> str | None:
        server, dbname = self.state.get("pg_server"), self.state.get("pg_database")
        if not server or not dbname:
            return None
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        admin = sa.create_engine(make_url(server).set(drivername="postgresql+psycopg"),
                                 isolation_level="AUTOCOMMIT", poolclass=NullPool)  # fmt: skip
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        except sa.exc.SQLAlchemyError as exc:
            self.say(f"could not drop database {dbname}: {str(exc).splitlines()[0][:200]}")
            return None
        finally:
            admin.dispose()
        return f"database {dbname}"

    def _agents(self, p: T.Plan) -> None:
        self.state.setdefault("processes", [])
        for h in p.hosts:
            argv = ["ip", "netns", "exec", h.ns, novanet_exe(), "--config-file", str(self.conf(h.name))]
            rec = procs.spawn([*argv, "agent", "--host", h.name], self.root / f"agent-{h.name}.log")
            rec["what"] = f"agent {h.name}"
            self.state["processes"].append(rec)
            self.save()

        def all_up() -> bool:
            rows = self.nv_json("service", "list")
            up = {r["host"] for r in rows if r["state"] == "up"}
            dead = [r["what"] for r in self.state["processes"] if not procs.alive(r)]
            if dead:
                raise Fatal(f"{', '.join(dead)} exited: see {self.root}/agent-*.log")
            return up >= {h.name for h in p.hosts}

        _wait(all_up, 60, "every agent to report up")

    def _instances(self, p: T.Plan, guest_cache: Path | None) -> None:
        self.state.setdefault("instances", {})
        for inst in p.instances:
            [vif] = self.nv_json(
                "instance", "allocate", inst.uuid, "--project-id", inst.project, "--host", inst.host,
                "--hostname", inst.name, host=inst.host,
            )  # fmt: skip
            subnet = vif["network"]["subnets"][0]
            self.state["instances"][inst.name] = {
                "uuid": inst.uuid,
                "host": inst.host,
                "mac": vif["address"],
                "devname": vif["devname"],
                "bridge": vif["network"]["bridge"],
                "fixed_ip": subnet["ips"][0]["address"],
                "gateway": subnet["gateway"],
                "floating_ip": None,
            }
            self.save()
        bridge = self.state["network"]["bridge"]
        # A single-host network gets its network host at the first allocation.
        hosts_with_bridge = {i.host for i in p.instances}
        if p.instances and not p.multi_host:
            hosts_with_bridge.add("net")
        for name in sorted(hosts_with_bridge):
            _wait(
                partial(ns_ok, p.host(name).ns, "ip", "link", "show", "dev", bridge),
                60,
                f"{bridge} on {name}",
            )
        if p.guest == "qemu":
            from novanet.sandbox import guest

            assert guest_cache is not None
            guest.start_all(self, p, guest_cache)
            return
        script = self.root / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        for inst in p.instances:
            self._add_ns(inst.ns)
            self.nv("vif", "plug", inst.uuid, "--netns", inst.ns, host=inst.host, ns=p.host(inst.host).ns)
        for inst in p.instances:
            if p.mode.dhcp:
                self._dhcp(inst)
            else:
                self._configure_injected(inst)

    def _dhcp(self, inst: T.Instance) -> None:
        out = self.root / f"lease-{inst.name}"
        want = self.state["instances"][inst.name]["fixed_ip"]

        def lease() -> str | None:
            out.unlink(missing_ok=True)
            in_ns(
                inst.ns, "env", f"LEASE_OUT={out}", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                "-t", "5", "-T", "1", "-s", str(self.root / "udhcpc.sh"), check=False, timeout=40,
            )  # fmt: skip
            return out.read_text().strip() if out.exists() else None

        got = _wait(lease, 90, f"a DHCP lease in {inst.name}", interval=0.5)
        out.unlink(missing_ok=True)
        if got != want:
            raise SandboxError(f"{inst.name} leased {got}, novanet allocated {want}")

    def _configure_injected(self, inst: T.Instance) -> None:
        """Flat mode: the instance reads its address only from the file novanet injected."""
        from novanet.sandbox import ifaces

        root = self.root / "guests" / inst.name
        root.mkdir(parents=True, exist_ok=True)
        self.nv("inject", inst.uuid, "--root", str(root))
        for cmd in ifaces.commands((root / "etc/network/interfaces").read_text()):
            in_ns(inst.ns, *cmd)

    def _floating(self, p: T.Plan) -> None:
        for inst in p.instances:
            fip = self.nv_json("floating", "allocate", "--project-id", inst.project)["address"]
            self.nv("floating", "associate", fip, "--instance", inst.uuid)
            self.state["instances"][inst.name]["floating_ip"] = fip
            self.save()
        for inst in p.instances:
            fip = self.state["instances"][inst.name]["floating_ip"]
            _wait(
                partial(ns_ok, p.outside_ns, "ping", "-c", "1", "-W", "1", fip, timeout=10),
                60,
                f"the outside to reach {inst.name} at {fip}",
            )

    # --- VPN (VLAN mode) ------------------------------------------------------------------

    def vpn_host(self, p: T.Plan) -> str:
        """The host whose agent runs the project's VPN appliance: the network host of a
        single-host network; for a multi-host one, the host whose vpn_ip is the network's
        VPN public address -- the first compute host, which has the network (vm1 is there)."""
        return "c1" if p.multi_host else "net"

    def vpn_list(self) -> list[dict[str, Any]]:
        """`vpn list --json`, probed from the outside namespace, as a user would reach it."""
        p = self.plan
        rows = json.loads(self.nv("vpn", "list", "--json", ns=p.outside_ns))
        return [r for r in rows if isinstance(r, dict)]

    def _vpn(self, p: T.Plan) -> None:
        """The project's cloudpipe VPN: `vpn create` (the network already reserves the
        clients' addresses, cnt_vpn_clients), the serving host's agent starts the
        appliance, and a client config for the sandbox's user."""
        host = self.vpn_host(p)
        project = T.VPN_PROJECT
        self.nv("vpn", "create", "--project", project, host=host)
        if p.multi_host:
            # The network got net's address at its creation, but net has no bridge of a
            # multi-host network: the endpoint moves to c1 (same port).
            [port] = [r["public_port"] for r in self.vpn_list() if r["project_id"] == project]
            ip = p.host(host).public_ip
            self.nv("vpn", "change", "--project", project, "--ip", ip, "--port", str(port))
        self.state["vpn"] = {"project": project, "host": host, "user": T.VPN_USER}
        self.save()
        if p.instances:  # the network is on its host: the agent starts the appliance there

            def running() -> dict[str, Any] | None:
                rows = [r for r in self.vpn_list() if r["project_id"] == project]
                return rows[0] if rows and rows[0]["state"] == "running" else None

            row = _wait(running, 60, f"the VPN of project {project} to answer from the outside", 0.5)
        else:
            [row] = [r for r in self.vpn_list() if r["project_id"] == project]
        apps = sorted(d.name for d in self.root.glob(f"hosts/{host}/vpn/nnvpn-*"))
        ovpn = self.root / f"{T.VPN_USER}.ovpn"
        self.nv("vpn", "client-config", "--project", project, "--user", T.VPN_USER,
                "--output", str(ovpn), host=host)  # fmt: skip
        self.state["vpn"].update(
            public_ip=row["public_ip"],
            public_port=row["public_port"],
            internal_ip=row["internal_ip"],
            state=row["state"],
            namespaces=apps,
            client_config=str(ovpn),
            clients=T.VPN_CLIENTS,
        )

    # --- down -----------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove everything recorded; returns what was removed (for the message)."""
        done: list[str] = []
        for rec in reversed(self.state.get("processes", [])):
            procs.stop(rec)
            done.append(rec.get("what", f"pid {rec['pid']}"))
        for pid_file in sorted(self.root.glob("hosts/*/networks/*/*/pid")):
            if _stop_dnsmasq(pid_file):
                done.append(f"dnsmasq of {pid_file.parent.parent.name}")
        # VPN appliances (VLAN mode): the agents leave them running when they stop. Each
        # has its run directory under its host's state path (pid, server.conf); the
        # namespace nnvpn-* it serves in is made by the agent, not listed in the plan.
        appliances = {d.name for d in self.root.glob("hosts/*/vpn/nnvpn-*") if d.is_dir()}
        appliances |= set(self.state.get("vpn", {}).get("namespaces", []))
        for pid_file in sorted(self.root.glob("hosts/*/vpn/nnvpn-*/pid")):
            if _stop_openvpn(pid_file):
                done.append(f"openvpn of {pid_file.parent.name}")
        existing = procs.namespaces()
        for ns in sorted(appliances):
            if not ns.startswith("nnvpn-") or ns not in existing:
                continue
            for pid in procs.pids_in(ns):
                procs.stop(procs.record(pid), timeout=5)
            run(["ip", "netns", "del", ns], check=False)
            done.append(f"netns {ns}")
        for ns in reversed(self.state.get("namespaces", [])):
            if ns not in existing:
                continue
            # Anything still running inside was started there by the sandbox (udhcpc,
            # a helper of an agent): end it by PID before the namespace goes.
            for pid in procs.pids_in(ns):
                procs.stop(procs.record(pid), timeout=5)
            run(["ip", "netns", "del", ns], check=False)
            done.append(f"netns {ns}")
        dropped = self._drop_postgresql()
        if dropped:
            done.append(dropped)
        return done


def _stop_dnsmasq(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    if cmdline and cmdline[0].endswith(b"dnsmasq") and any(str(pid_file).encode() in a for a in cmdline):
        procs.stop(procs.record(pid))
        return True
    return False


def _stop_openvpn(pid_file: Path) -> bool:
    """End the openvpn server of an appliance's run directory, if the PID is still it."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    conf = str(pid_file.parent / "server.conf").encode()
    if cmdline and cmdline[0].endswith(b"openvpn") and conf in cmdline:
        procs.stop(procs.record(pid))
        return True
    return False


def up(
    state_path: str,
    name: str,
    manager: str,
    *,
    multi_host: bool,
    hosts: int,
    instances: int,
    guest: str,
    say: Say,
    db: str | None = None,
) -> Sandbox:
    if os.geteuid() != 0:
        raise InvalidInput("novanet sandbox needs root (it makes network namespaces)")
    tools = ["ip", "nft", "dnsmasq", "busybox", "ping"] + (["openvpn"] if mode_vlan(manager) else [])
    for tool in tools:
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool} is missing: run scripts/setup.sh")
    root = sandbox_root(state_path, name)
    if (root / "state.json").exists():
        raise Conflict(f"sandbox {name} is already up (novanet sandbox down --name {name} first)")
    leftovers = sorted(n for n in procs.namespaces() if n.startswith(f"{T.NS_PREFIX}{name}-"))
    if leftovers:
        raise Conflict(
            f"namespaces of a sandbox {name} exist ({leftovers[0]}...): run `novanet sandbox down`"
        )
    uuids = [str(uuidlib.uuid4()) for _ in range(instances)]
    seg = "vxlan"
    if mode_vlan(manager):
        seg = "vlan" if _has_8021q() else "vxlan"
    plan = T.plan(
        name, manager, multi_host=multi_host, hosts=hosts, instances=instances, guest=guest,
        segmentation=seg, uuids=uuids,
    )  # fmt: skip
    cache = None
    if guest == "qemu":
        from novanet.sandbox import guest as g

        say("guest kernel and initramfs (cached after the first run)")
        cache = g.prepare(Path(state_path) / "sandbox" / ".guest", say)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # dnsmasq reads its files as an unprivileged user
    for parent in (root.parent, root.parent.parent):
        with contextlib.suppress(OSError):
            parent.chmod(parent.stat().st_mode | 0o055)
    initial: dict[str, Any] = {
        "plan": plan.to_json(),
        "namespaces": [],
        "processes": [],
        "status": "building",
    }
    if db:
        initial["pg_server"] = db
    sb = Sandbox(root, initial, say)
    sb.save()
    try:
        sb.up(plan, cache)
    except BaseException:
        say("failed: tearing down what was built")
        sb.teardown()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return sb


def mode_vlan(manager: str) -> bool:
    from novanet.domain.modes import mode_from_name

    return mode_from_name(manager).vlan


def _has_8021q() -> bool:
    """Whether this kernel makes 802.1Q devices (tried in a scratch namespace)."""
    ns = f"{T.NS_PREFIX}probe-{os.getpid()}"
    run(["ip", "netns", "add", ns])
    try:
        in_ns(ns, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        return ns_ok(ns, "ip", "link", "add", "link", "p0", "name", "p0.5", "type", "vlan", "id", "5")
    finally:
        run(["ip", "netns", "del", ns], check=False)


def down(state_path: str, name: str, say: Say) -> list[str]:
    root = sandbox_root(state_path, name)
    prefix = f"{T.NS_PREFIX}{name}-"
    try:
        sb = Sandbox.load(root, say)
    except NotFound:
        # No state: only namespaces carrying this sandbox's name can be left over.
        stray = sorted(n for n in procs.namespaces() if n.startswith(prefix))
        if not stray and not root.exists():
            raise
        sb = Sandbox(root, {"namespaces": stray}, say)
    done = sb.teardown()
    stray = sorted(n for n in procs.namespaces() if n.startswith(prefix))
    for ns in stray:
        run(["ip", "netns", "del", ns], check=False)
        done.append(f"netns {ns}")
    shutil.rmtree(root, ignore_errors=True)
    return done
