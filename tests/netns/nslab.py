"""Namespaces for the kernel tier: every test builds its own and removes them.

Rules (../shared/testing.md): nothing touches the root namespace; traffic only between
namespaces made here; names carry a per-run random suffix; a sweeper removes leftovers
of an earlier killed run (namespaces named ``nvt-*``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

PREFIX = "nvt-"


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the netns tier needs root (CI runs as root)")
        pytest.skip("netns tier needs root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh")


def sh(argv: Sequence[str], *, check: bool = True, timeout: float = 30, input: str | None = None) -> str:
    """Run a command (argument list, never a shell string) and return its stdout."""
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@dataclass
class Netns:
    name: str

    def run(self, *argv: str, check: bool = True, timeout: float = 30, input: str | None = None) -> str:
        return sh(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout, input=input)

    def popen(self, *argv: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], text=True, **kw)  # type: ignore[call-overload]

    def ok(self, *argv: str, timeout: float = 30) -> bool:
        res = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout
        )
        return res.returncode == 0


@dataclass
class World:
    """Namespaces and veth pairs of one test, removed at the end even on failure."""

    # The creating pid is part of every name, so the sweeper of a concurrent run never
    # deletes namespaces a live test session still uses.
    suffix: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(2)}")
    namespaces: list[Netns] = field(default_factory=list)

    def ns(self, role: str) -> Netns:
        name = f"{PREFIX}{role}-{self.suffix}"
        sh(["ip", "netns", "add", name])
        n = Netns(name)
        self.namespaces.append(n)
        n.run("ip", "link", "set", "lo", "up")
        return n

    def veth(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        """A veth pair with one end in each namespace (created in ``a``, so never in root)."""
        a.run("ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.run("ip", "link", "set", a_if, "up")
        b.run("ip", "link", "set", b_if, "up")

    def cleanup(self) -> None:
        for n in reversed(self.namespaces):
            # Processes started inside (dnsmasq, agents) are ended by the tests that started
            # them; here only the namespace goes.
            sh(["ip", "netns", "del", n.name], check=False)
