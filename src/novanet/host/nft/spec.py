"""novanet's nftables tables as plain data, and their encoding as `nft -j` commands.

A ``Ruleset`` is split the way a partial sync needs it: the structure (tables, counters,
set declarations, chains, rules) which only a full sync rewrites, and the elements of
each set or map, which a partial sync edits one by one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = "novanet"
FAMILIES = ("ip", "bridge")

Json = Any  # one node of nft's JSON schema


@dataclass(frozen=True, order=True)
class Prefix:
    """An IPv4 network element of an interval set (a /32 is written as a plain address)."""

    addr: str
    length: int


Atom = str | int | Prefix
Value = Atom | tuple[Atom, ...]  # a tuple is a concatenation (``a . b``)


def value_to_json(value: Value) -> Json:
    if isinstance(value, tuple):
        return {"concat": [value_to_json(v) for v in value]}
    if isinstance(value, Prefix):
        return {"prefix": {"addr": value.addr, "len": value.length}}
    return value


def value_from_json(node: Json) -> Value:
    """The inverse of ``value_to_json`` for what ``nft -j list`` prints."""
    if isinstance(node, dict):
        if "concat" in node:
            return tuple(_atom_from_json(v) for v in node["concat"])
        if "elem" in node:  # an element carrying counters, timeouts or comments
            return value_from_json(node["elem"]["val"])
        return _atom_from_json(node)
    return _atom_from_json(node)


def _atom_from_json(node: Json) -> Atom:
    if isinstance(node, dict):
        if "prefix" in node:
            return Prefix(str(node["prefix"]["addr"]), int(node["prefix"]["len"]))
        if "range" in node:
            lo, hi = node["range"]
            return _range_atom(str(lo), str(hi))
        raise ValueError(f"unexpected nftables element {node!r}")
    if isinstance(node, bool) or not isinstance(node, str | int):
        raise ValueError(f"unexpected nftables element {node!r}")
    return node


def _range_atom(lo: str, hi: str) -> Atom:
    # Ranges never come from us: keep them recognisable in drift messages.
    return f"{lo}-{hi}"


def value_text(value: Value) -> str:
    if isinstance(value, tuple):
        return " . ".join(value_text(v) for v in value)
    if isinstance(value, Prefix):
        return f"{value.addr}/{value.length}"
    return str(value)


def network_value(cidr: str) -> Value:
    """An interval-set element for an IPv4 network given as ``a.b.c.d[/n]``."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    if net.prefixlen == 32:
        return str(net.network_address)
    return Prefix(str(net.network_address), net.prefixlen)


def collapse(cidrs: list[str]) -> list[Value]:
    """Interval sets refuse overlapping elements: merge them first."""
    nets = [ipaddress.IPv4Network(c, strict=False) for c in cidrs]
    return [network_value(str(n)) for n in ipaddress.collapse_addresses(nets)]


@dataclass(frozen=True)
class SetSpec:
    name: str
    type: tuple[str, ...]  # several entries: a concatenation
    map: str | None = None  # the data type when this is a map
    flags: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "map" if self.map else "set"

    def type_json(self) -> Json:
        return self.type[0] if len(self.type) == 1 else list(self.type)


@dataclass(frozen=True)
class Rule:
    comment: str  # human readable; also what `drift` compares
    expr: list[Json]


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    type: str | None = None  # base chains only: type, hook, prio, policy
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True)
class Table:
    family: str
    counters: tuple[str, ...]
    sets: tuple[SetSpec, ...]
    chains: tuple[Chain, ...]
    name: str = TABLE

    def set(self, name: str) -> SetSpec:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)


Elements = Mapping[Value, Value | None]  # key -> data (None for plain sets)


@dataclass(frozen=True)
class Ruleset:
    tables: tuple[Table, ...]
    # (family, set name) -> elements
    elements: Mapping[tuple[str, str], Elements] = field(default_factory=dict)


def _ref(table: Table) -> dict[str, str]:
    return {"family": table.family, "table": table.name}


def chain_json(table: Table, chain: Chain) -> Json:
    obj: dict[str, Any] = {**_ref(table), "name": chain.name}
    if chain.is_base:
        obj.update(type=chain.type, hook=chain.hook, prio=chain.prio, policy=chain.policy)
    return obj


def set_json(table: Table, spec: SetSpec) -> Json:
    obj: dict[str, Any] = {**_ref(table), "name": spec.name, "type": spec.type_json()}
    if spec.map:
        obj["map"] = spec.map
    if spec.flags:
        obj["flags"] = list(spec.flags)
    return obj


def element_json(key: Value, data: Value | None) -> Json:
    if data is None:
        return value_to_json(key)
    return [value_to_json(key), value_to_json(data)]


def element_command(verb: str, table: Table, name: str, elems: list[Json]) -> Json:
    return {verb: {"element": {**_ref(table), "name": name, "elem": elems}}}


def table_commands(table: Table, elements: Mapping[tuple[str, str], Elements]) -> list[Json]:
    """Replace one table entirely: add (so the delete cannot fail), delete, re-create."""
    ref = {"family": table.family, "name": table.name}
    cmds: list[Json] = [
        {"add": {"table": dict(ref)}},
        {"delete": {"table": dict(ref)}},
        {"add": {"table": dict(ref)}},
    ]
    cmds += [{"add": {"counter": {**_ref(table), "name": c}}} for c in table.counters]
    for spec in table.sets:
        cmds.append({"add": {spec.kind: set_json(table, spec)}})
        elems = elements.get((table.family, spec.name), {})
        if elems:
            cmds.append(
                element_command("add", table, spec.name, [element_json(k, v) for k, v in elems.items()])
            )
    # every chain before any rule, so jumps find their target
    cmds += [{"add": {"chain": chain_json(table, c)}} for c in table.chains]
    for chain in table.chains:
        for rule in chain.rules:
            obj = {**_ref(table), "chain": chain.name, "expr": rule.expr, "comment": rule.comment}
            cmds.append({"add": {"rule": obj}})
    return cmds
