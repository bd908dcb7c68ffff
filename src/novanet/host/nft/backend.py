"""Where nftables transactions go: the kernel through `nft -j -f -`, or a fake."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from typing import Protocol

from novanet.host.nft.spec import FAMILIES, TABLE, Json

_NETNS = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
OUR_TABLES: tuple[tuple[str, str], ...] = tuple((family, TABLE) for family in FAMILIES)


class NftError(RuntimeError):
    """nft refused a transaction (nothing of it was applied) or could not be run."""

    code = "nft_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NftBackend(Protocol):
    def apply(self, commands: list[Json]) -> None:
        """Run ``commands`` as one atomic transaction; raise NftError if refused."""

    def dump(self) -> Json:
        """novanet's tables, in the form of ``nft -j list table``: ``{"nftables": [...]}``."""

    def tables_present(self) -> bool:
        """Whether all of novanet's tables exist: a cheap probe for an outside flush
        (lists table names only, never elements)."""


def error_line(stderr: str) -> str:
    """nft's own message, without the ``internal:0:0-0: Error:`` position prefix."""
    for line in stderr.splitlines():
        if "Error: " in line:
            return line.split("Error: ", 1)[1].strip()
    lines = [s.strip() for s in stderr.splitlines() if s.strip()]
    return lines[0] if lines else "nft failed"


class RealNft:
    """The kernel, through one ``nft -j -f -`` per transaction (argument lists, no shell).

    ``netns`` runs nft under ``ip netns exec NAME``; the agent normally already runs
    inside its namespace and leaves it None.
    """

    def __init__(
        self,
        netns: str | None = None,
        *,
        nft: str = "nft",
        tables: Sequence[tuple[str, str]] = OUR_TABLES,
        timeout: float = 300.0,
    ) -> None:
        if netns is not None and (not _NETNS.match(netns) or netns in (".", "..")):
            raise ValueError(f"invalid network namespace name {netns!r}")
        self._prefix = ["ip", "netns", "exec", netns] if netns else []
        self._nft = nft
        self._tables = tuple(tables)
        self._timeout = timeout

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [*self._prefix, self._nft, *args]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self._timeout)
        except subprocess.TimeoutExpired:
            raise NftError(f"nft did not finish within {self._timeout:g}s") from None
        except OSError as exc:
            raise NftError(f"cannot run nft: {exc}") from None

    def apply(self, commands: list[Json]) -> None:
        if not commands:
            return
        payload = json.dumps({"nftables": commands}, separators=(",", ":"))
        res = self._run(["-j", "-f", "-"], payload)
        if res.returncode != 0:
            raise NftError(error_line(res.stderr))

    def tables_present(self) -> bool:
        res = self._run(["-j", "list", "tables"])
        if res.returncode != 0:
            raise NftError(error_line(res.stderr))
        listed = json.loads(res.stdout)["nftables"]
        have = {(i["table"]["family"], i["table"]["name"]) for i in listed if "table" in i}
        return all(t in have for t in self._tables)

    def dump(self) -> Json:
        items: list[Json] = []
        for family, name in self._tables:
            res = self._run(["-j", "list", "table", family, name])
            if res.returncode != 0:
                if error_line(res.stderr) == "No such file or directory":
                    continue  # the table is missing: that is what drift reports
                # anything else (even `ip netns exec` not finding the namespace) is an error
                raise NftError(error_line(res.stderr))
            items += [i for i in json.loads(res.stdout)["nftables"] if "metainfo" not in i]
        return {"nftables": items}
