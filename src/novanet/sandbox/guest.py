"""qemu guests of a sandbox (filled in below)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from novanet.sandbox.procs import SandboxError


def prepare(cache: Path, say: Any) -> Path:
    raise SandboxError("qemu guests are not built yet")


def start_all(sb: Any, p: Any, cache: Path) -> None:
    raise SandboxError("qemu guests are not built yet")


def exec_in(sb: Any, name: str, cmd: list[str]) -> tuple[int, str]:
    raise SandboxError("qemu guests are not built yet")


def console(sb: Any, name: str) -> None:
    raise SandboxError("qemu guests are not built yet")
