"""An in-memory nftables that behaves like the kernel for what novanet sends it.

Modelled on knftables' fake and checked against nft 1.0.6 on Linux 6.18: tables,
chains, rules, sets, maps, elements and named counters; ``add`` is idempotent,
``create`` refuses what exists, ``delete`` refuses what is missing ("No such file or
directory") or still referenced ("Device or resource busy"); a map key already bound to
other data is refused ("File exists"); interval elements may not overlap; and a
transaction is atomic: if one command fails, nothing of it is applied. ``dump()``
answers in the shape of ``nft -j list table``. Rule expressions are stored as given,
only their references to sets, counters and chains are checked.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from novanet.host.nft.backend import OUR_TABLES, NftError
from novanet.host.nft.fake_values import Canon, canonical, interval_json, normal
from novanet.host.nft.spec import Json

ENOENT = "Could not process rule: No such file or directory"
EEXIST = "Could not process rule: File exists"
EBUSY = "Could not process rule: Device or resource busy"
EINVAL = "Could not process rule: Invalid argument"
EOPNOTSUPP = "Could not process rule: Operation not supported"

_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
_BASE_KEYS = ("type", "hook", "prio")


@dataclass
class _Set:
    handle: int
    kind: str  # "set" or "map"
    type: tuple[str, ...]
    map: str | None
    flags: tuple[str, ...]
    elements: dict[Canon, tuple[Json, Json | None]] = field(default_factory=dict)

    @property
    def interval(self) -> bool:
        return "interval" in self.flags


@dataclass
class _Rule:
    handle: int
    expr: list[Json]
    comment: str | None


@dataclass
class _Chain:
    handle: int
    base: dict[str, Any] | None
    rules: list[_Rule] = field(default_factory=list)


@dataclass
class _Table:
    handle: int
    counters: dict[str, int] = field(default_factory=dict)
    sets: dict[str, _Set] = field(default_factory=dict)
    chains: dict[str, _Chain] = field(default_factory=dict)


@dataclass
class _State:
    tables: dict[tuple[str, str], _Table] = field(default_factory=dict)
    next_handle: int = 1

    def handle(self) -> int:
        self.next_handle += 1
        return self.next_handle

    def clone(self) -> _State:
        """A copy to stage a transaction on. Stored JSON (rule expressions, element
        values) is never mutated in place, so containers are copied, not their contents."""
        tables = {}
        for key, t in self.tables.items():
            sets = {n: dataclasses.replace(s, elements=dict(s.elements)) for n, s in t.sets.items()}
            chains = {
                n: _Chain(c.handle, dict(c.base) if c.base else None, list(c.rules))
                for n, c in t.chains.items()
            }
            tables[key] = _Table(t.handle, dict(t.counters), sets, chains)
        return _State(tables, self.next_handle)


def _refs(node: Json, sets: set[str], counters: set[str], chains: set[str]) -> None:
    """Collect what a rule expression refers to."""
    if isinstance(node, str):
        if node.startswith("@"):
            sets.add(node[1:])
    elif isinstance(node, list):
        for n in node:
            _refs(n, sets, counters, chains)
    elif isinstance(node, dict):
        for key, val in node.items():
            if key == "counter" and isinstance(val, str):
                counters.add(val)
            elif key in ("jump", "goto") and isinstance(val, dict):
                chains.add(val["target"])
            else:
                _refs(val, sets, counters, chains)


class FakeNft:
    """An NftBackend without a kernel (see the module docstring)."""

    def __init__(self) -> None:
        self._state = _State()
        self.transactions = 0  # applied (successful) transactions, for tests and metrics

    # --- NftBackend ---------------------------------------------------------------------

    def apply(self, commands: list[Json]) -> None:
        if not commands:
            return
        staged = self._state.clone()
        for cmd in commands:
            self._command(staged, cmd)
        self._state = staged
        self.transactions += 1

    def tables_present(self) -> bool:
        return all(t in self._state.tables for t in OUR_TABLES)

    def dump(self) -> Json:
        out: list[Json] = []
        for (family, name), t in self._state.tables.items():
            ref = {"family": family, "table": name}
            out.append({"table": {"family": family, "name": name, "handle": t.handle}})
            for cname, handle in t.counters.items():
                out.append({"counter": {**ref, "name": cname, "handle": handle, "packets": 0, "bytes": 0}})
            for sname, s in t.sets.items():
                obj: dict[str, Any] = {**ref, "name": sname, "handle": s.handle}
                obj["type"] = s.type[0] if len(s.type) == 1 else list(s.type)
                if s.map:
                    obj["map"] = s.map
                if s.flags:
                    obj["flags"] = list(s.flags)
                if s.elements:
                    obj["elem"] = [self._elem_json(s, k) for k in sorted(s.elements, key=repr)]
                out.append({s.kind: obj})
            for cname, c in t.chains.items():
                chain: dict[str, Any] = {**ref, "name": cname, "handle": c.handle}
                chain.update(c.base or {})
                out.append({"chain": chain})
            for cname, c in t.chains.items():
                for r in c.rules:
                    rule: dict[str, Any] = {**ref, "chain": cname, "handle": r.handle}
                    if r.comment is not None:
                        rule["comment"] = r.comment
                    rule["expr"] = copy.deepcopy(r.expr)
                    out.append({"rule": rule})
        return {"nftables": out}

    # --- commands -------------------------------------------------------------------------

    def _command(self, st: _State, cmd: Json) -> None:
        if not isinstance(cmd, dict) or len(cmd) != 1:
            raise NftError(f"malformed command {cmd!r}")
        ((verb, body),) = cmd.items()
        if not isinstance(body, dict) or len(body) != 1:
            raise NftError(f"malformed command {cmd!r}")
        ((kind, obj),) = body.items()
        handler = getattr(self, f"_{verb}_{kind}", None)
        if handler is None:
            raise NftError(f"the fake does not model '{verb} {kind}'")
        try:
            handler(st, obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a field missing or mistyped
            raise NftError(f"malformed command {cmd!r}: {exc!r}") from None

    @staticmethod
    def _family(obj: Json) -> str:
        family = obj.get("family", "ip")
        if family not in _FAMILIES:
            raise NftError(f"unknown address family {family!r}")
        return str(family)

    def _table(self, st: _State, obj: Json, key: str = "table") -> _Table:
        t = st.tables.get((self._family(obj), obj[key]))
        if t is None:
            raise NftError(ENOENT)
        return t

    # tables
    def _add_table(self, st: _State, obj: Json) -> None:
        st.tables.setdefault((self._family(obj), obj["name"]), _Table(st.handle()))

    def _create_table(self, st: _State, obj: Json) -> None:
        if (self._family(obj), obj["name"]) in st.tables:
            raise NftError(EEXIST)
        self._add_table(st, obj)

    def _delete_table(self, st: _State, obj: Json) -> None:
        self._table(st, obj, "name")
        del st.tables[(self._family(obj), obj["name"])]

    def _flush_table(self, st: _State, obj: Json) -> None:
        for c in self._table(st, obj, "name").chains.values():
            c.rules.clear()

    # chains
    def _add_chain(self, st: _State, obj: Json) -> None:
        t = self._table(st, obj)
        base = {k: obj[k] for k in (*_BASE_KEYS, "policy") if k in obj} or None
        if base is not None and "hook" not in base:
            raise NftError(EINVAL)
        old = t.chains.get(obj["name"])
        if old is None:
            t.chains[obj["name"]] = _Chain(st.handle(), base)
            return
        if base is None:
            return
        if old.base is None or any(old.base.get(k) != base.get(k) for k in _BASE_KEYS):
            raise NftError(EOPNOTSUPP)
        old.base.update(base)  # a policy change is allowed

    def _create_chain(self, st: _State, obj: Json) -> None:
        if obj["name"] in self._table(st, obj).chains:
            raise NftError(EEXIST)
        self._add_chain(st, obj)

    def _delete_chain(self, st: _State, obj: Json) -> None:
        t = self._table(st, obj)
        if obj["name"] not in t.chains:
            raise NftError(ENOENT)
        for c in t.chains.values():
            for r in c.rules:
                chains: set[str] = set()
                _refs(r.expr, set(), set(), chains)
                if obj["name"] in chains:
                    raise NftError(EBUSY)
        del t.chains[obj["name"]]  # its own rules go with it, as in the kernel

    def _flush_chain(self, st: _State, obj: Json) -> None:
        chain = self._table(st, obj).chains.get(obj["name"])
        if chain is None:
            raise NftError(ENOENT)
        chain.rules.clear()

    # rules
    def _rule(self, st: _State, obj: Json, first: bool) -> None:
        t = self._table(st, obj)
        chain = t.chains.get(obj["chain"])
        if chain is None:
            raise NftError(ENOENT)
        if any(k in obj for k in ("handle", "index", "position")):
            raise NftError("the fake does not model rule positions")
        sets: set[str] = set()
        counters: set[str] = set()
        chains: set[str] = set()
        _refs(obj["expr"], sets, counters, chains)
        if any(s not in t.sets for s in sets):
            raise NftError("No such file or directory")
        if any(c not in t.counters for c in counters) or any(c not in t.chains for c in chains):
            raise NftError(ENOENT)
        rule = _Rule(st.handle(), copy.deepcopy(obj["expr"]), obj.get("comment"))
        if first:
            chain.rules.insert(0, rule)
        else:
            chain.rules.append(rule)

    def _add_rule(self, st: _State, obj: Json) -> None:
        self._rule(st, obj, first=False)

    def _insert_rule(self, st: _State, obj: Json) -> None:
        self._rule(st, obj, first=True)

    def _delete_rule(self, st: _State, obj: Json) -> None:
        chain = self._table(st, obj).chains.get(obj["chain"])
        if chain is None:
            raise NftError(ENOENT)
        for i, r in enumerate(chain.rules):
            if r.handle == obj.get("handle"):
                del chain.rules[i]
                return
        raise NftError(ENOENT)

    # sets and maps
    def _add_set(self, st: _State, obj: Json, kind: str = "set") -> None:
        t = self._table(st, obj)
        types = tuple(obj["type"]) if isinstance(obj["type"], list) else (obj["type"],)
        data = obj.get("map") if kind == "map" else None
        if kind == "map" and not isinstance(data, str):
            raise NftError(f"Invalid map type {data!r}")
        new = _Set(st.handle(), kind, types, data, tuple(obj.get("flags", ())))
        old = t.sets.get(obj["name"])
        if old is None:
            t.sets[obj["name"]] = new
        elif (old.kind, old.type, old.map, old.flags) != (new.kind, new.type, new.map, new.flags):
            raise NftError(EEXIST)
        if obj.get("elem"):
            self._add_element(st, obj)

    def _add_map(self, st: _State, obj: Json) -> None:
        self._add_set(st, obj, "map")

    def _create_set(self, st: _State, obj: Json, kind: str = "set") -> None:
        if obj["name"] in self._table(st, obj).sets:
            raise NftError(EEXIST)
        self._add_set(st, obj, kind)

    def _create_map(self, st: _State, obj: Json) -> None:
        self._create_set(st, obj, "map")

    def _delete_set(self, st: _State, obj: Json) -> None:
        t = self._table(st, obj)
        if obj["name"] not in t.sets:
            raise NftError(ENOENT)
        for c in t.chains.values():
            for r in c.rules:
                sets: set[str] = set()
                _refs(r.expr, sets, set(), set())
                if obj["name"] in sets:
                    raise NftError(EBUSY)
        del t.sets[obj["name"]]

    _delete_map = _delete_set

    def _flush_set(self, st: _State, obj: Json, kind: str = "set") -> None:
        s = self._table(st, obj).sets.get(obj["name"])
        if s is None or s.kind != kind:  # nft looks the name up as the kind it was told
            raise NftError("No such file or directory")
        s.elements.clear()

    def _flush_map(self, st: _State, obj: Json) -> None:
        self._flush_set(st, obj, "map")

    # elements
    def _target(self, st: _State, obj: Json) -> _Set:
        s = self._table(st, obj).sets.get(obj["name"])
        if s is None:
            raise NftError("No such file or directory")
        return s

    @staticmethod
    def _elems(obj: Json) -> list[Json]:
        elems = obj.get("elem")
        if not isinstance(elems, list) or not elems:
            raise NftError("element list missing")
        return elems

    def _parse(self, s: _Set, node: Json, with_data: bool) -> tuple[Canon, Json, Json | None]:
        if isinstance(node, list):
            if s.kind != "map":
                raise NftError("set is not a map")
            key, data = node
            if s.map is not None:
                canonical(data, (s.map,), False)
        else:
            if s.kind == "map" and with_data:
                raise NftError(EINVAL)
            key, data = node, None
        return canonical(key, s.type, s.interval), key, data

    def _add_element(self, st: _State, obj: Json, create: bool = False) -> None:
        s = self._target(st, obj)
        for node in self._elems(obj):
            canon, key, data = self._parse(s, node, with_data=True)
            if canon in s.elements:
                if create or s.elements[canon][1] != data:
                    raise NftError(EEXIST)
                continue
            if s.interval and len(s.type) == 1:
                lo, hi = canon
                if any(lo <= b and a <= hi for a, b in s.elements):
                    raise NftError("interval overlaps with an existing one")
            s.elements[canon] = (key, data)

    def _create_element(self, st: _State, obj: Json) -> None:
        self._add_element(st, obj, create=True)

    def _delete_element(self, st: _State, obj: Json) -> None:
        s = self._target(st, obj)
        for node in self._elems(obj):
            canon = self._parse(s, node, with_data=False)[0]
            if canon not in s.elements:
                raise NftError(ENOENT)
            del s.elements[canon]

    # named counters
    def _add_counter(self, st: _State, obj: Json) -> None:
        t = self._table(st, obj)
        t.counters.setdefault(obj["name"], st.handle())

    def _create_counter(self, st: _State, obj: Json) -> None:
        if obj["name"] in self._table(st, obj).counters:
            raise NftError(EEXIST)
        self._add_counter(st, obj)

    def _delete_counter(self, st: _State, obj: Json) -> None:
        t = self._table(st, obj)
        if obj["name"] not in t.counters:
            raise NftError(ENOENT)
        for c in t.chains.values():
            for r in c.rules:
                counters: set[str] = set()
                _refs(r.expr, set(), counters, set())
                if obj["name"] in counters:
                    raise NftError(EBUSY)
        del t.counters[obj["name"]]

    # --- dump helpers ---------------------------------------------------------------------

    @staticmethod
    def _elem_json(s: _Set, canon: Canon) -> Json:
        key, data = s.elements[canon]
        if s.interval and len(s.type) == 1:
            key = interval_json(*canon)
        key = normal(key, s.type)
        if s.kind == "map":
            return [key, normal(data, (s.map or "",))]
        return key
