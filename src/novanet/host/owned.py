"""What this host's agent has built, remembered across restarts, so that what a network
leaves behind when it leaves the host can be torn down (and reported while it is not).

The kernel cannot tell our bridges from an operator's: a bridge named br100 may be
anyone's. So the agent records every bridge it builds, with the addresses it put on it,
*before* building it (a crash in between leaves a record of something that may not
exist, never something built and unrecorded). A bridge recorded but no longer desired is
torn down: deleted with its VLAN/VXLAN device, or, when it carries a NIC (flat_interface:
the host's own addresses were moved onto it), only our addresses are removed from it.

The record is a small JSON file, 0600, in a directory only root writes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from novanet.domain import names
from novanet.domain.errors import NovanetError
from novanet.host.model import Bridge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Built:
    """A bridge this agent built: whether a NIC is its segment, and our addresses on it."""

    nic: bool
    addresses: frozenset[str]


class OwnedBridges:
    """The record file: bridge name -> Built."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: remember in memory only (tests, `agent check` without state)
        self._memory: dict[str, Built] = {}

    def load(self) -> dict[str, Built]:
        if self.path is None:
            return dict(self._memory)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("record of built bridges %s unreadable (%s): nothing will be torn down", self.path, exc)
            return {}
        out = {}
        for name, item in raw.items() if isinstance(raw, dict) else ():
            try:
                names.interface_name(name, "bridge")
                out[name] = Built(bool(item["nic"]), frozenset(str(a) for a in item["addresses"]))
            except (NovanetError, KeyError, TypeError):
                log.error("record of built bridges %s: entry %r ignored", self.path, name)
        return out

    def save(self, built: dict[str, Built]) -> None:
        if self.path is None:
            self._memory = dict(built)
            return
        data = {n: {"nic": b.nic, "addresses": sorted(b.addresses)} for n, b in sorted(built.items())}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(data, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def as_built(bridges: Iterable[Bridge]) -> dict[str, Built]:
    return {
        b.name: Built(b.segment is not None and b.segment.kind == "nic", frozenset(b.addresses))
        for b in bridges
    }


def merged(old: dict[str, Built], new: dict[str, Built]) -> dict[str, Built]:
    """What may exist once ``new`` is being built over ``old``: both, addresses joined."""
    out = dict(old)
    for name, b in new.items():
        before = out.get(name)
        out[name] = b if before is None else Built(b.nic or before.nic, b.addresses | before.addresses)
    return out
