"""Builders for the expressions of nft's JSON schema, so rules read close to nft syntax."""

from __future__ import annotations

from typing import Any

from novanet.host.nft.spec import Json


def payload(protocol: str, fld: str) -> Json:
    return {"payload": {"protocol": protocol, "field": fld}}


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def concat(*exprs: Json) -> Json:
    return {"concat": list(exprs)}


def match(op: str, left: Json, right: Json) -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def eq(left: Json, right: Json) -> Json:
    return match("==", left, right)


def ne(left: Json, right: Json) -> Json:
    return match("!=", left, right)


def ct_status_dnat() -> Json:
    return match("in", {"ct": {"key": "status"}}, "dnat")


def ct_status_not_dnat() -> Json:
    # `ct status != dnat` would compare the whole bitmask: test the one bit instead.
    return eq({"&": [{"ct": {"key": "status"}}, "dnat"]}, 0)


def lookup(key: Json, name: str) -> Json:
    return {"map": {"key": key, "data": f"@{name}"}}


def nat_to(kind: str, addr: Json, port: int | None = None) -> Json:
    stmt: dict[str, Any] = {"family": "ip", "addr": addr}
    if port is not None:
        stmt["port"] = port
    return {kind: stmt}


ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}
SADDR = payload("ip", "saddr")
DADDR = payload("ip", "daddr")


def counted_drop(counter: str) -> list[Json]:
    return [{"counter": counter}, DROP]


def raw(base: str, offset: int, length: int) -> Json:
    """A raw payload field: ``@base,offset,length`` (bits)."""
    return {"payload": {"base": base, "offset": offset, "len": length}}


def set_mark(value: Json) -> Json:
    return {"mangle": {"key": meta("mark"), "value": value}}


def ct_state(*states: str) -> Json:
    return match("in", {"ct": {"key": "state"}}, list(states) if len(states) > 1 else states[0])
