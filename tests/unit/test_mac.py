"""MAC addresses of virtual interfaces."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from novanet.domain.mac import MAC_PREFIX, normalize_mac, random_mac

MAC_RE = re.compile(r"^fa:16:3e(:[0-9a-f]{2}){3}$")


def test_prefix_is_openstacks() -> None:
    assert MAC_PREFIX == (0xFA, 0x16, 0x3E)


def test_format_and_prefix() -> None:
    for _ in range(200):
        mac = random_mac()
        assert MAC_RE.match(mac), mac


def test_locally_administered_unicast() -> None:
    first = int(random_mac().split(":")[0], 16)
    assert first & 0x02  # locally administered
    assert not first & 0x01  # unicast


def test_random_across_many_draws() -> None:
    macs = [random_mac() for _ in range(3000)]
    # 3000 draws from 2**24: a handful of clashes at most by the birthday bound (~0.27 expected).
    assert len(set(macs)) >= 2990
    for pos in (3, 4, 5):
        octets = Counter(m.split(":")[pos] for m in macs)
        assert len(octets) >= 200, f"octet {pos} takes too few values: {len(octets)}"


def test_injected_rand_function() -> None:
    calls: list[int] = []
    values = iter([0x01, 0xAB, 0xFF])

    def rand(n: int) -> int:
        calls.append(n)
        return next(values)

    assert random_mac(rand) == "fa:16:3e:01:ab:ff"
    assert calls == [256, 256, 256]


def test_injected_rand_extremes() -> None:
    assert random_mac(lambda n: 0) == "fa:16:3e:00:00:00"
    assert random_mac(lambda n: n - 1) == "fa:16:3e:ff:ff:ff"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("fa:16:3e:aa:bb:cc", "fa:16:3e:aa:bb:cc"),
        ("FA:16:3E:AA:BB:CC", "fa:16:3e:aa:bb:cc"),
        ("fa-16-3e-0a-0b-0c", "fa:16:3e:0a:0b:0c"),
        ("  fa:16:3e:00:00:01\n", "fa:16:3e:00:00:01"),
    ],
)
def test_normalize_mac_accepts(raw: str, expected: str) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "fa:16:3e:aa:bb",
        "fa:16:3e:aa:bb:cc:dd",
        "fa:16:3e:aa:bb:cg",
        "fa163eaabbcc",
        "fa:16:3e:a:bb:cc",
        "x",
    ],
)
def test_normalize_mac_refuses(raw: str) -> None:
    assert normalize_mac(raw) is None
