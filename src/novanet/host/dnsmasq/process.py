"""Processes behind a small Protocol: the real one (subprocess, /proc, signals) and a
faithful fake for unit tests.

Only argument lists are run, never shell strings. A process is "ours" only when its
/proc cmdline is a dnsmasq started with our pid-file path; nothing else is signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from novanet.domain.errors import NovanetError


class DnsmasqError(NovanetError):
    """dnsmasq (or dhcp_release) could not be started, stopped or run."""

    code = "dnsmasq_error"
    http_status = 500
    exit_code = 6


class ProcessRunner(Protocol):
    def start_daemon(self, argv: Sequence[str]) -> None:
        """Run a command that daemonizes; returns once the daemon is up, raises
        DnsmasqError (with its message) when it fails to start."""

    def run(self, argv: Sequence[str]) -> None:
        """Run a short command to completion; DnsmasqError when it fails."""

    def cmdline(self, pid: int) -> list[str] | None:
        """The argument list of a live process, None when there is none (or a zombie)."""

    def signal(self, pid: int, sig: int) -> None:
        """Send ``sig``; ProcessLookupError when the process is gone."""

    def wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` has exited; False when it still runs after ``timeout``."""

    def dnsmasqs(self, binary: str, pid_file_prefix: str) -> dict[int, list[str]]:
        """Every dnsmasq in this network namespace whose --pid-file lies under
        ``pid_file_prefix``: pid -> argv (not the lease-script helper each one forks)."""


def pid_file_arg(pid_file: Path) -> str:
    return f"--pid-file={pid_file}"


def is_our_dnsmasq(cmdline: Sequence[str] | None, pid_file: Path, binary: str = "dnsmasq") -> bool:
    """True only for a dnsmasq whose command line names exactly this pid file."""
    if not cmdline:
        return False
    return os.path.basename(cmdline[0]) == os.path.basename(binary) and pid_file_arg(pid_file) in cmdline


def is_dnsmasq_under(cmdline: Sequence[str], binary: str, pid_file_prefix: str) -> bool:
    """A dnsmasq whose pid file lies under ``pid_file_prefix`` (a directory, with '/')."""
    if not cmdline or os.path.basename(cmdline[0]) != os.path.basename(binary):
        return False
    return any(a.startswith(f"--pid-file={pid_file_prefix}") for a in cmdline)


def pid_file_of(cmdline: Sequence[str]) -> str | None:
    for a in cmdline:
        if a.startswith("--pid-file="):
            return a[len("--pid-file=") :]
    return None


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class SubprocessRunner:
    """The real processes of this host (and of the network namespace the agent runs in)."""

    def __init__(self, timeout: float = 60.0, poll: float = 0.02) -> None:
        self.timeout = timeout
        self.poll = poll

    def _run(self, argv: Sequence[str]) -> None:
        try:
            # dnsmasq closes inherited descriptors when it daemonizes, so capturing its
            # output returns as soon as the foreground part has exited.
            res = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except FileNotFoundError:
            raise DnsmasqError(f"{argv[0]} not found (install dnsmasq-base and dnsmasq-utils)") from None
        except subprocess.TimeoutExpired:
            raise DnsmasqError(f"{argv[0]} did not finish within {self.timeout:g} s") from None
        if res.returncode != 0:
            detail = _last_line(res.stderr) or _last_line(res.stdout) or "no message"
            raise DnsmasqError(f"{os.path.basename(argv[0])} failed (exit {res.returncode}): {detail}")

    def start_daemon(self, argv: Sequence[str]) -> None:
        self._run(argv)

    def run(self, argv: Sequence[str]) -> None:
        self._run(argv)

    def cmdline(self, pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if not raw:
            return None  # a zombie or a kernel thread
        return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]

    def signal(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.cmdline(pid) is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)
        return True

    def dnsmasqs(self, binary: str, pid_file_prefix: str) -> dict[int, list[str]]:
        # What a dnsmasq is, not what a file says: its command line (our binary, a pid
        # file under our directory) and its network namespace (another namespace's agent
        # may use the same paths). The pid file only speeds up the common case.
        try:
            here = os.stat("/proc/self/ns/net")
        except OSError:
            return {}
        found: dict[int, list[str]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            argv = self.cmdline(pid)
            if not argv or not is_dnsmasq_under(argv, binary, pid_file_prefix):
                continue
            try:
                ns = os.stat(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            if (ns.st_dev, ns.st_ino) == (here.st_dev, here.st_ino) and _holds_a_socket(pid):
                found[pid] = argv
        return found


def _holds_a_socket(pid: int) -> bool:
    """The lease-script helper dnsmasq forks has its command line but no socket (only
    pipes), and it may outlive a killed dnsmasq for a moment: it must not pass for one."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                return True
        except OSError:
            continue
    return False


def _arg(argv: Sequence[str], name: str) -> str | None:
    prefix = f"--{name}="
    for a in argv:
        if a.startswith(prefix):
            return a[len(prefix) :]
    return None


class FakeRunner:
    """Processes that behave like dnsmasq where the manager can tell.

    A started dnsmasq writes its pid file and "runs" until SIGTERM/SIGKILL (the pid file
    stays behind, as with the real one); SIGHUP is counted; a second dnsmasq on a listen
    address already served fails to start as the real one fails to bind. ``crash`` ends
    a process behind the manager's back; ``spawn`` makes an unrelated process (to prove
    it is never signalled).
    """

    def __init__(self, first_pid: int = 4000) -> None:
        self._next = first_pid
        self.procs: dict[int, list[str]] = {}
        self.started: list[list[str]] = []
        self.signals: list[tuple[int, int]] = []
        self.commands: list[list[str]] = []
        self.fail_next_start: str | None = None
        self.elsewhere: set[int] = set()  # pids in another network namespace

    def _new_pid(self) -> int:
        self._next += 1
        return self._next

    def spawn(self, argv: Sequence[str]) -> int:
        pid = self._new_pid()
        self.procs[pid] = list(argv)
        return pid

    def crash(self, pid: int) -> None:
        del self.procs[pid]

    def start_daemon(self, argv: Sequence[str]) -> None:
        argv = list(argv)
        if self.fail_next_start is not None:
            message, self.fail_next_start = self.fail_next_start, None
            raise DnsmasqError(f"dnsmasq failed (exit 1): {message}")
        listen = _arg(argv, "listen-address")
        for other in self.procs.values():
            if os.path.basename(other[0]) == "dnsmasq" and _arg(other, "listen-address") == listen:
                raise DnsmasqError(
                    f"dnsmasq failed (exit 2): failed to create listening socket for {listen}: "
                    "Address already in use"
                )
        pid = self.spawn(argv)
        pid_file = _arg(argv, "pid-file")
        if pid_file:
            Path(pid_file).write_text(f"{pid}\n", encoding="ascii")
        self.started.append(argv)

    def run(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))

    def cmdline(self, pid: int) -> list[str] | None:
        argv = self.procs.get(pid)
        return list(argv) if argv is not None else None

    def signal(self, pid: int, sig: int) -> None:
        if pid not in self.procs:
            raise ProcessLookupError(pid)
        self.signals.append((pid, sig))
        if sig in (signal.SIGTERM, signal.SIGKILL):
            del self.procs[pid]

    def wait_gone(self, pid: int, timeout: float) -> bool:
        return pid not in self.procs

    def dnsmasqs(self, binary: str, pid_file_prefix: str) -> dict[int, list[str]]:
        return {
            pid: list(argv)
            for pid, argv in sorted(self.procs.items())
            if pid not in self.elsewhere and is_dnsmasq_under(argv, binary, pid_file_prefix)
        }

    def hups(self, pid: int | None = None) -> int:
        return sum(1 for p, s in self.signals if s == signal.SIGHUP and (pid is None or p == pid))

    def dump(self) -> dict[int, list[str]]:
        """The live processes: pid -> argv."""
        return {pid: list(argv) for pid, argv in sorted(self.procs.items())}
