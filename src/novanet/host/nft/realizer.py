"""novanet's nftables realizer: render, apply, and check for drift.

- ``full_sync(state)``: one atomic transaction that replaces ``ip novanet`` and
  ``bridge novanet`` (and touches no other table);
- ``delta(old, new)``: element edits of the sets and maps between two applied states,
  or a full sync when a rule itself changes;
- backends: ``RealNft`` (``nft -j -f -``) and ``FakeNft``, both ``NftBackend``;
- ``drift(expected, backend)``: what differs between the kernel and ``expected``.

What the rules do is described in ``nft_render``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from novanet.host.model import HostState
from novanet.host.nft.backend import NftBackend, NftError, RealNft
from novanet.host.nft.bridge import DROP_COUNTERS
from novanet.host.nft.fake import FakeNft
from novanet.host.nft.render import IP_COUNTERS, build, delta, full_sync
from novanet.host.nft.spec import TABLE, Json, SetSpec, Value, element_json, value_from_json, value_text

__all__ = [
    "DROP_COUNTERS",
    "IP_COUNTERS",
    "TABLE",
    "FakeNft",
    "NftBackend",
    "NftError",
    "RealNft",
    "delta",
    "drift",
    "full_sync",
]

_SHOWN = 5  # elements named per drift line; the rest are counted


@dataclass
class _Listed:
    counters: set[str] = field(default_factory=set)
    sets: dict[str, tuple[str, Json, Json, Json, set[Hashable]]] = field(default_factory=dict)
    chains: dict[str, Json] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)


def _listed(dump: Json) -> dict[tuple[str, str], _Listed]:
    tables: dict[tuple[str, str], _Listed] = {}
    for item in dump.get("nftables", []):
        ((kind, obj),) = item.items()
        if kind == "table":
            tables[(obj["family"], obj["name"])] = _Listed()
            continue
        t = tables.get((obj.get("family"), obj.get("table")))
        if t is None:
            continue
        if kind == "counter":
            t.counters.add(obj["name"])
        elif kind in ("set", "map"):
            elems = {_element(e) for e in obj.get("elem", [])}
            t.sets[obj["name"]] = (kind, obj.get("type"), obj.get("map"), obj.get("flags", []), elems)
        elif kind == "chain":
            t.chains[obj["name"]] = {k: obj.get(k) for k in ("type", "hook", "prio", "policy")}
            t.rules.setdefault(obj["name"], [])
        elif kind == "rule":
            t.rules.setdefault(obj["chain"], []).append(obj.get("comment") or "<rule without comment>")
    return tables


def _element(node: Json) -> Hashable:
    if isinstance(node, list):  # a map element: key, data
        return (value_from_json(node[0]), value_from_json(node[1]))
    return value_from_json(node)


def _expected_element(spec: SetSpec, key: Value, data: Value | None) -> Hashable:
    return _element(element_json(key, data))


def _text(spec: SetSpec, element: Any) -> str:
    if spec.map:
        return f"{value_text(element[0])} : {value_text(element[1])}"
    return value_text(element)


def _some(spec: SetSpec, elements: set[Hashable]) -> str:
    shown = sorted(elements, key=repr)[:_SHOWN]
    more = f" and {len(elements) - len(shown)} more" if len(elements) > len(shown) else ""
    return ", ".join(_text(spec, e) for e in shown) + more


def drift(expected: HostState, backend: NftBackend) -> list[str]:
    """Human-readable differences between what ``expected`` needs in novanet's tables and
    what ``backend`` holds (missing tables, chains, sets; rules that differ, missing or
    extra elements). Empty when the two agree."""
    want = build(expected)
    have = _listed(backend.dump())
    out: list[str] = []
    for table in want.tables:
        where = f"{table.family} {table.name}"
        got = have.get((table.family, table.name))
        if got is None:
            out.append(f"table {where} is missing")
            continue
        out += [f"counter {where} {c} is missing" for c in table.counters if c not in got.counters]
        for spec in table.sets:
            listed = got.sets.get(spec.name)
            if listed is None:
                out.append(f"{spec.kind} {where} {spec.name} is missing")
                continue
            kind, type_, data, flags, elements = listed
            if (kind, type_, data, list(flags)) != (spec.kind, spec.type_json(), spec.map, list(spec.flags)):
                out.append(f"{spec.kind} {where} {spec.name} is declared differently")
                continue
            wanted = {
                _expected_element(spec, k, v)
                for k, v in want.elements.get((table.family, spec.name), {}).items()
            }
            if missing := wanted - elements:
                out.append(f"{spec.kind} {where} {spec.name}: {len(missing)} missing: {_some(spec, missing)}")
            if extra := elements - wanted:
                out.append(f"{spec.kind} {where} {spec.name}: {len(extra)} unexpected: {_some(spec, extra)}")
        out += [
            f"{kind} {where} {name} is unexpected"
            for name, (kind, *_) in got.sets.items()
            if name not in {s.name for s in table.sets}
        ]
        for chain in table.chains:
            if chain.name not in got.chains:
                out.append(f"chain {where} {chain.name} is missing")
                continue
            base = {"type": chain.type, "hook": chain.hook, "prio": chain.prio, "policy": chain.policy}
            if got.chains[chain.name] != base:
                out.append(f"chain {where} {chain.name} is declared differently")
            want_rules = [r.comment for r in chain.rules]
            have_rules = got.rules.get(chain.name, [])
            if want_rules == have_rules:
                continue
            line = f"chain {where} {chain.name}: {len(have_rules)} rules, expected {len(want_rules)}"
            missing_rules = Counter(want_rules) - Counter(have_rules)
            extra_rules = Counter(have_rules) - Counter(want_rules)
            if missing_rules:
                line += "; missing: " + ", ".join(repr(c) for c in missing_rules.elements())
            if extra_rules:
                line += "; unexpected: " + ", ".join(repr(c) for c in extra_rules.elements())
            if not missing_rules and not extra_rules:
                line += "; out of order"
            out.append(line)
        out += [
            f"chain {where} {name} is unexpected"
            for name in got.chains
            if name not in {c.name for c in table.chains}
        ]
    return out
