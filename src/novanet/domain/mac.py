"""MAC addresses of virtual interfaces: fa:16:3e plus three random octets, as the original."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

MAC_PREFIX = (0xFA, 0x16, 0x3E)
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def random_mac(rand: Callable[[int], int] | None = None) -> str:
    """A random locally administered unicast MAC with the OpenStack prefix."""
    pick = rand if rand is not None else random.SystemRandom().randrange
    octets = [*MAC_PREFIX, pick(256), pick(256), pick(256)]
    return ":".join(f"{o:02x}" for o in octets)


def normalize_mac(value: str) -> str | None:
    """Lower-case colon form, or None when ``value`` is not a MAC address."""
    v = value.strip().lower().replace("-", ":")
    return v if _MAC.fullmatch(v) else None
