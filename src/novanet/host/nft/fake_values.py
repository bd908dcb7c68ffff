"""Element values as FakeNft stores them: checked against the set's type like nft does,
and printed back the way ``nft -j list`` prints them."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

from novanet.host.nft.backend import NftError
from novanet.host.nft.spec import Json

Canon = Any  # hashable canonical form of an element key

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _ipv4_int(value: Json) -> int:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, value), "big")
    except (OSError, TypeError):
        raise NftError(f"Could not resolve hostname: {value!r} is not an IPv4 address") from None


def _atom(value: Json, type_: str, interval: bool) -> Canon:
    if type_ == "ipv4_addr":
        if isinstance(value, dict) and interval and "prefix" in value:
            net = ipaddress.IPv4Network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
            return (int(net.network_address), int(net.broadcast_address))
        if isinstance(value, dict) and interval and "range" in value:
            lo, hi = (_ipv4_int(v) for v in value["range"])
            return (lo, hi)
        n = _ipv4_int(value)
        return (n, n) if interval else n
    if type_ == "ether_addr":
        if not isinstance(value, str) or not _MAC.match(value.lower()):
            raise NftError(f"Could not parse ether_addr {value!r}")
        return value.lower()
    if type_ == "ifname":
        if not isinstance(value, str) or not 0 < len(value.encode()) < 16:
            raise NftError(f"Could not parse ifname {value!r}")
        return value
    if type_ == "mark":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise NftError(f"Could not parse mark {value!r}")
        return value
    if type_ == "inet_service":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise NftError(f"Could not parse inet_service {value!r}")
        return value
    if isinstance(value, dict | list):
        raise NftError(f"unsupported {type_} value {value!r}")
    return value


def canonical(node: Json, types: tuple[str, ...], interval: bool) -> Canon:
    if isinstance(node, dict) and "elem" in node:
        node = node["elem"]["val"]
    if len(types) == 1:
        return _atom(node, types[0], interval)
    if not isinstance(node, dict) or "concat" not in node or len(node["concat"]) != len(types):
        raise NftError(f"element {node!r} does not match type {' . '.join(types)}")
    # an interval concatenation: each field is a range (a plain value is a range of one)
    return tuple(_atom(v, t, interval) for v, t in zip(node["concat"], types, strict=True))


def interval_json(lo: int, hi: int) -> Json:
    a, b = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
    if lo == hi:
        return str(a)
    nets = list(ipaddress.summarize_address_range(a, b))
    if len(nets) == 1:
        return {"prefix": {"addr": str(nets[0].network_address), "len": nets[0].prefixlen}}
    return {"range": [str(a), str(b)]}


def normal(node: Json, types: tuple[str, ...]) -> Json:
    """How nft prints a value: MACs in lower case, no ``elem`` wrapper."""
    if isinstance(node, dict) and "elem" in node:
        node = node["elem"]["val"]
    if isinstance(node, dict) and "concat" in node:
        return {"concat": [normal(v, (t,)) for v, t in zip(node["concat"], types, strict=False)]}
    if types == ("ether_addr",) and isinstance(node, str):
        return node.lower()
    if types == ("ipv4_addr",) and isinstance(node, str):
        return str(ipaddress.IPv4Address(node))
    return node
