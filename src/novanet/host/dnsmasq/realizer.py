"""One dnsmasq per network on this host, converged to the desired DhcpServers.

Layout: ``<networks_path>/<host>/<network uuid>/{hosts.d/<mac>, opts, pid, dhcpbridge}``.
The host name is part of the path so agents of several hosts (each in its own network
namespace) can share one machine. Directories are 0755 and data files 0644: dnsmasq
drops to an unprivileged user before it reads them, and a file it cannot read fails
silently ("no address available"). The lease script is 0700: it may carry the database
URL, and dnsmasq runs it with the privileges it started with.

A sync costs at most one SIGHUP per network, only when entries were removed or changed
(dnsmasq keeps those until SIGHUP; new hosts are picked up through inotify), and a
restart only when the command line itself changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from novanet.domain import names
from novanet.domain.errors import InvalidInput, NovanetError
from novanet.domain.mac import normalize_mac
from novanet.host.dnsmasq.config import (
    PID_FILE,
    DnsmasqOptions,
    NetworkPaths,
    argv,
    host_filename,
    host_line,
    hosts_files,
    lease_script,
    opts_file,
    validate,
)
from novanet.host.dnsmasq.process import (
    DnsmasqError,
    FakeRunner,
    ProcessRunner,
    SubprocessRunner,
    is_dnsmasq_under,
    is_our_dnsmasq,
    pid_file_of,
    read_pid,
)
from novanet.host.model import DhcpServer

__all__ = [
    "DnsmasqError",
    "DnsmasqManager",
    "DnsmasqOptions",
    "FakeRunner",
    "NetworkPaths",
    "ProcessRunner",
    "SubprocessRunner",
    "SyncReport",
    "argv",
    "host_filename",
    "host_line",
    "hosts_files",
    "lease_script",
    "opts_file",
    "validate",
]

log = logging.getLogger(__name__)

DIR_MODE = 0o755
FILE_MODE = 0o644
SCRIPT_MODE = 0o700


@dataclass
class SyncReport:
    """What one sync did, per network uuid; ``errors`` holds networks left unconverged."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)  # got one SIGHUP
    stopped: list[str] = field(default_factory=list)
    hosts_added: int = 0
    hosts_changed: int = 0
    hosts_removed: int = 0
    duplicates_ended: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _ensure_dir(path: Path) -> None:
    """A state directory: ours (root's, for an agent), others may only read and search it.
    One owned by another user (dnsmasq's, say) could have its files swapped: taken back."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.geteuid():
        os.chown(path, os.geteuid(), os.getegid())
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)


def _ensure_private_dir(path: Path) -> None:
    """The lease-event spool: root's alone (events become database writes)."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        os.chown(path, os.geteuid(), os.getegid())
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)


def _write_if_changed(path: Path, content: str, mode: int) -> bool:
    """Replace ``path`` atomically (a dot-named temporary file renamed over it) when its
    content or mode differs; True when it was written."""
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) == mode and path.read_text(encoding="utf-8") == content:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # not subject to the umask, unlike the open() mode
        os.write(fd, content.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def unreadable_ancestor(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users cannot traverse."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            return p
    return None


class DnsmasqManager:
    """Starts, reloads, restarts and stops the dnsmasq of each network on one host."""

    def __init__(
        self,
        networks_path: str | Path,
        host: str,
        lease_script_argv: Sequence[str],
        runner: ProcessRunner,
        options: DnsmasqOptions = DnsmasqOptions(),
        *,
        stop_timeout: float = 5.0,
    ) -> None:
        self.networks_path = Path(networks_path).absolute()
        self.host = names.host_name(host)
        self.base = self.networks_path / self.host
        self.lease_script_argv = list(lease_script_argv)
        self.runner = runner
        self.options = options
        self.stop_timeout = stop_timeout
        self._warned: set[Path] = set()

    def paths(self, network_uuid: str) -> NetworkPaths:
        return NetworkPaths.of(self.networks_path, self.host, network_uuid)

    # --- processes ---------------------------------------------------------------

    def _scan(self) -> dict[str, list[int]]:
        """Our dnsmasq processes by network: found by what they are (command line, network
        namespace), not by a pid file, which a process that is not ours could have written
        over. Several for one network, or one for a network that is gone, can show here."""
        out: dict[str, list[int]] = {}
        for pid, cmd in self.runner.dnsmasqs(self.options.binary, f"{self.base}/").items():
            pid_file = Path(pid_file_of(cmd) or "")
            if pid_file.name != PID_FILE or pid_file.parent.parent != self.base:
                continue
            try:
                uuid = names.network_uuid(pid_file.parent.name)
            except InvalidInput:
                continue
            if uuid == pid_file.parent.name:
                out.setdefault(uuid, []).append(pid)
        return out

    def _pick(self, network_uuid: str, pids: Sequence[int]) -> int | None:
        """The one that counts among ``pids``: the pid file's when it names one of them."""
        if not pids:
            return None
        named = read_pid(self.paths(network_uuid).pid)
        return named if named in pids else min(pids)

    def pid_of(self, network_uuid: str) -> int | None:
        """The pid of the network's running dnsmasq, verified through /proc."""
        uuid = names.network_uuid(network_uuid)
        return self._pick(uuid, self._scan().get(uuid, []))

    def running(self) -> dict[str, int]:
        """Every network of this host whose dnsmasq runs: uuid -> pid (one /proc scan)."""
        return {uuid: pid for uuid, pids in sorted(self._scan().items()) if (pid := self._pick(uuid, pids))}

    def _started(self, p: NetworkPaths) -> int | None:
        pid = read_pid(p.pid)
        if pid is None or not is_our_dnsmasq(self.runner.cmdline(pid), p.pid, self.options.binary):
            return None
        return pid

    def _start(self, p: NetworkPaths, cmd: list[str]) -> None:
        # dnsmasq's foreground part exits once the daemon has bound its sockets, read its
        # files and run the lease script's init (a failing init is a failed start).
        p.pid.unlink(missing_ok=True)  # a stale file must not pass for the new process
        self.runner.start_daemon(cmd)
        for _ in range(50):  # the pid file is written by the daemon: allow it a moment
            if self._started(p) is not None:
                break
            time.sleep(0.02)
        else:
            raise DnsmasqError(f"dnsmasq started but is not running with pid file {p.pid}")
        p.reload_mark.unlink(missing_ok=True)  # a fresh process read everything

    def _end(self, network_uuid: str, pids: Sequence[int]) -> None:
        """SIGTERM each of ``pids`` (SIGKILL one that lingers, if it is still ours)."""
        p = self.paths(network_uuid)
        for pid in pids:
            try:
                self.runner.signal(pid, signal.SIGTERM)
                if not self.runner.wait_gone(pid, self.stop_timeout):
                    cmd = self.runner.cmdline(pid)
                    if cmd is not None and is_dnsmasq_under(cmd, self.options.binary, f"{p.root}/"):
                        self.runner.signal(pid, signal.SIGKILL)
                    if not self.runner.wait_gone(pid, self.stop_timeout):
                        raise DnsmasqError(f"dnsmasq {pid} of network {network_uuid} does not exit")
            except ProcessLookupError:
                continue

    def stop(self, network_uuid: str, pids: Sequence[int] | None = None) -> bool:
        """End every dnsmasq of the network; False if none ran."""
        uuid = names.network_uuid(network_uuid)
        if pids is None:
            pids = self._scan().get(uuid, [])
        if not pids:
            return False
        self._end(uuid, pids)
        self.paths(uuid).pid.unlink(missing_ok=True)  # dnsmasq leaves it behind
        return True

    # --- files -------------------------------------------------------------------

    def _sync_hosts(self, p: NetworkPaths, wanted: dict[str, str]) -> tuple[int, int, int]:
        """Make hosts.d hold exactly ``wanted``; returns (added, changed, removed).

        One pass over the directory through a descriptor (no path objects, no stat per
        file: 10,000 reservations at a first sync). A new file is written straight under
        its name: dnsmasq reads a hosts.d file on IN_CLOSE_WRITE, so it sees it whole, and
        one cut short by a crash differs from what is wanted at the next sync, which
        rewrites it and sends the SIGHUP. A changed file is replaced by a rename, as dnsmasq
        may read it at any time. No fsync: dnsmasq reads the page cache, and a host that
        reboots gets its files from the database again."""
        dfd = os.open(p.hosts_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            present = set()
            for name in os.listdir(dfd):
                if name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dfd)  # a write cut short
                else:
                    present.add(name)
            new = sorted(wanted.keys() - present)
            changed = [n for n in sorted(wanted.keys() & present) if not _same_at(dfd, n, wanted[n])]
            stale = sorted(present - wanted.keys())
            if changed or stale:
                # dnsmasq keeps entries of changed and deleted files until SIGHUP: the mark
                # is set before the files change, so a crash in between still ends in one.
                p.reload_mark.touch(mode=FILE_MODE)
            for name in new:
                try:
                    _write_at(dfd, name, wanted[name], os.O_EXCL)
                except FileExistsError:  # appeared since the listing: replace it
                    _replace_at(dfd, name, wanted[name])
            for name in changed:
                _replace_at(dfd, name, wanted[name])
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dfd)
        finally:
            os.close(dfd)
        return len(new), len(changed), len(stale)

    def _warn_unreadable(self, p: NetworkPaths) -> None:
        bad = unreadable_ancestor(p.hosts_dir)
        if bad is not None and bad not in self._warned:
            self._warned.add(bad)
            log.warning(
                "%s is not searchable by other users: dnsmasq reads %s after dropping root "
                "and will answer 'no address available'",
                bad,
                p.hosts_dir,
            )

    # --- convergence -------------------------------------------------------------

    def _sync_one(self, server: DhcpServer, report: SyncReport, procs: dict[str, list[int]]) -> None:
        p = self.paths(server.network_uuid)
        cmd = argv(server, p, self.options)
        hosts = hosts_files(server)
        _ensure_dir(self.networks_path)
        for d in (self.base, p.root, p.hosts_dir):
            _ensure_dir(d)
        _ensure_private_dir(p.spool)
        self._warn_unreadable(p)
        _write_if_changed(p.script, lease_script(self.lease_script_argv, server, self.host, p), SCRIPT_MODE)
        opts = opts_file(server)
        if not _same(p.opts, opts, FILE_MODE):
            p.reload_mark.touch(mode=FILE_MODE)  # the opts file is read on SIGHUP only
            _write_if_changed(p.opts, opts, FILE_MODE)
        added, changed, removed = self._sync_hosts(p, hosts)
        report.hosts_added += added
        report.hosts_changed += changed
        report.hosts_removed += removed

        uuid = server.network_uuid
        pids = procs.get(uuid, [])
        pid = self._pick(uuid, pids)
        extra = [x for x in pids if x != pid]
        if extra:
            # never two per network: the one the pid file names (or the oldest) stays
            log.warning("dhcp for network %s: ending duplicate dnsmasq %s", uuid, extra)
            self._end(uuid, extra)
            report.duplicates_ended += len(extra)
        if pid is not None and self.runner.cmdline(pid) != cmd:
            self.stop(uuid, [pid])
            self._start(p, cmd)
            report.restarted.append(uuid)
        elif pid is None:
            self._start(p, cmd)
            report.started.append(uuid)
        elif p.reload_mark.exists():
            self.runner.signal(pid, signal.SIGHUP)
            p.reload_mark.unlink()
            report.reloaded.append(uuid)

    def spools(self) -> list[Path]:
        """The lease-event spool of every network with a state directory on this host."""
        return [self.paths(uuid).spool for uuid in self._network_dirs()]

    def _network_dirs(self) -> list[str]:
        """Network uuids that have a state directory under this host's."""
        try:
            entries = sorted(self.base.iterdir())
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            try:
                if e.is_dir() and names.network_uuid(e.name) == e.name:
                    out.append(e.name)
            except InvalidInput:
                continue  # not ours: left alone
        return out

    def sync(self, servers: Sequence[DhcpServer], *, prune: bool = True) -> SyncReport:
        """Converge every network in ``servers``; with ``prune`` (a full sync) stop the
        dnsmasq of every other network and remove its directory.

        A network that fails is reported in ``errors`` and the others still converge.
        """
        report = SyncReport()
        wanted = set()
        procs = self._scan()
        for server in servers:
            wanted.add(server.network_uuid)
            try:
                self._sync_one(server, report, procs)
            except (NovanetError, OSError) as exc:
                report.errors[server.network_uuid] = str(exc)
                log.error("dhcp for network %s: %s", server.network_uuid, exc)
        if prune:
            # orphans too: a dnsmasq whose directory is gone is still found by /proc
            for uuid in sorted((set(self._network_dirs()) | set(procs)) - wanted):
                try:
                    if self.stop(uuid, procs.get(uuid, [])):
                        report.stopped.append(uuid)
                    if self.paths(uuid).root.exists():
                        shutil.rmtree(self.paths(uuid).root)
                except (NovanetError, OSError) as exc:
                    report.errors[uuid] = str(exc)
        return report

    def release(self, bridge: str, address: str, mac: str) -> None:
        """Drop a lease now (force_dhcp_release): ``dhcp_release <bridge> <address> <mac>``.

        dnsmasq then runs the lease script with ``del``. Nothing happens when the lease
        is unknown to dnsmasq (dhcp_release gets no answer).
        """
        names.interface_name(bridge, "bridge")
        norm = normalize_mac(mac)
        if norm is None:
            raise InvalidInput(f"invalid MAC address {mac!r}")
        try:
            addr = str(IPv4Address(address))
        except ValueError:
            raise InvalidInput(f"invalid address {address!r}") from None
        self.runner.run(["dhcp_release", bridge, addr, norm])

    def check(self, servers: Sequence[DhcpServer]) -> list[str]:
        """Drift between the host and ``servers``, one readable line per problem."""
        out: list[str] = []
        wanted = set()
        procs = self._scan()
        for server in servers:
            uuid = server.network_uuid
            wanted.add(uuid)
            try:
                p = self.paths(uuid)
                cmd = argv(server, p, self.options)
                hosts = hosts_files(server)
            except NovanetError as exc:
                out.append(f"dhcp {uuid}: invalid desired state: {exc}")
                continue
            pids = procs.get(uuid, [])
            pid = self._pick(uuid, pids)
            if len(pids) > 1:
                out.append(f"dhcp {uuid}: {len(pids)} dnsmasq serve it ({', '.join(map(str, sorted(pids)))})")
            if pid is None:
                out.append(f"dhcp {uuid}: dnsmasq is not running")
            elif self.runner.cmdline(pid) != cmd:
                out.append(f"dhcp {uuid}: dnsmasq {pid} runs with outdated arguments")
            if not p.hosts_dir.is_dir():
                out.append(f"dhcp {uuid}: {p.hosts_dir} is missing")
                continue
            bad = unreadable_ancestor(p.hosts_dir)
            if bad is not None:
                out.append(f"dhcp {uuid}: {bad} is not searchable by dnsmasq's unprivileged user")
            present = {n for n in os.listdir(p.hosts_dir) if not n.startswith(".")}
            for name in sorted(hosts.keys() - present):
                out.append(f"dhcp {uuid}: host file {name} is missing")
            for name in sorted(present - hosts.keys()):
                out.append(f"dhcp {uuid}: stale host file {name}")
            for name in sorted(hosts.keys() & present):
                if not _same(p.hosts_dir / name, hosts[name], FILE_MODE):
                    out.append(f"dhcp {uuid}: host file {name} differs")
            if not _same(p.opts, opts_file(server), FILE_MODE):
                out.append(f"dhcp {uuid}: options file differs")
            if not _same(p.script, lease_script(self.lease_script_argv, server, self.host, p), SCRIPT_MODE):
                out.append(f"dhcp {uuid}: lease script differs")
            if p.reload_mark.exists():
                out.append(f"dhcp {uuid}: dnsmasq still holds removed entries (SIGHUP pending)")
        for uuid, pids in sorted(procs.items()):
            if uuid not in wanted:
                for pid in sorted(pids):
                    out.append(f"dhcp {uuid}: dnsmasq {pid} runs for a network this host no longer serves")
        return out


def _same(path: Path, content: str, mode: int) -> bool:
    try:
        return stat.S_IMODE(path.stat().st_mode) == mode and path.read_text(encoding="utf-8") == content
    except (OSError, UnicodeDecodeError):
        return False


def _write_at(dfd: int, name: str, content: str, flags: int = os.O_TRUNC) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | flags, FILE_MODE, dir_fd=dfd)
    try:
        os.fchmod(fd, FILE_MODE)  # not subject to the umask, unlike the open() mode
        os.write(fd, content.encode("utf-8"))
    finally:
        os.close(fd)


def _replace_at(dfd: int, name: str, content: str) -> None:
    """Atomically, through a dot-named temporary file renamed over ``name``."""
    tmp = f".{name}.tmp"
    _write_at(dfd, tmp, content)
    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _same_at(dfd: int, name: str, content: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
    except OSError:
        return False
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            return False
        data = content.encode("utf-8")
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)
