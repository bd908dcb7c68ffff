"""Processes and namespaces of a sandbox: started, recorded, ended by PID only.

A process is recorded with its start time (/proc/PID/stat field 22), so a PID reused
by an unrelated process after a reboot or a crash is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from novanet.domain.errors import NovanetError


class SandboxError(NovanetError):
    code = "sandbox_failed"
    http_status = 500
    exit_code = 1


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{' '.join(argv[:6])} did not finish in {timeout:.0f}s") from None
    if check and res.returncode != 0:
        detail = " ".join((res.stderr or res.stdout).split())[-300:]
        raise SandboxError(f"{' '.join(argv[:8])} failed ({res.returncode}): {detail}")
    return res.stdout


def in_ns(ns: str, *argv: str, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    return run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout, input=input)


def ns_ok(ns: str, *argv: str, timeout: float = 30) -> bool:
    try:
        res = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


def namespaces() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def spawn(argv: Sequence[str], log: Path) -> dict[str, Any]:
    """Start a long-lived process in its own session; its record for the state file."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return {"pid": proc.pid, "start": start_time(proc.pid), "argv": list(argv)}


def alive(rec: dict[str, Any]) -> bool:
    st = start_time(int(rec["pid"]))
    return st is not None and st == rec.get("start") and not _zombie(int(rec["pid"]))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop(rec: dict[str, Any], timeout: float = 10) -> None:
    """SIGTERM the recorded process (if it is still that process), SIGKILL after ``timeout``."""
    pid = int(rec["pid"])
    if not alive(rec):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(rec):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not alive(rec):
            return
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pids_in(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def record(pid: int) -> dict[str, Any]:
    return {"pid": pid, "start": start_time(pid)}
