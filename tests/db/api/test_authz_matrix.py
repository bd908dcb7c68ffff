"""The authorization matrix: every endpoint and method, called by an admin, a member of
the owning project (p1), a member of another project (p2), no token and a revoked token.

Refusals are checked first, against a dump of every table taken before: a refused
request changes nothing. Then the allowed callers, each on objects made fresh for it.
Project p2 can never list, show, associate, disassociate or release p1's floating IPs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from apihelpers import boot, setup_network, setup_pool
from apisupport import Api, open_api

from novanet.db.schema import metadata
from novanet.service import floating as F
from novanet.service import networks as N
from novanet.service import tokens

Vars = dict[str, Any]


def _floating(api: Api, project: str = "p1", server: str | None = None) -> Vars:
    info = F.allocate(api.ctx, project)
    if server:
        F.associate(api.ctx, info["address"], server)
    return {"fid": info["id"], "fip": info["address"]}


def _world(api: Api) -> Vars:
    sid, _ = boot(api.ctx, "p1")
    sid2, _ = boot(api.ctx, "p2")
    return {"sid": sid, "sid2": sid2}


def _tenant_net(api: Api) -> Vars:
    cidr = f"10.{50 + _tenant_net.n}.0.0/24"  # type: ignore[attr-defined]
    _tenant_net.n += 1  # type: ignore[attr-defined]
    net = N.create_networks(
        api.ctx,
        api.ctx.config.network_manager,
        N.NetworkRequest(label="t", fixed_range_v4=cidr, bridge=f"brt{_tenant_net.n}", project_id="p1"),  # type: ignore[attr-defined]
    )[0]
    return {"tn": net.uuid, "tcidr": cidr}


_tenant_net.n = 0  # type: ignore[attr-defined]


@dataclass
class Row:
    method: str
    path: str  # {p}: the caller's project; {name}: from prep
    expect: dict[str, int]  # admin, owner, other (none and revoked: always 401)
    body: Any = None
    prep: Callable[[Api, Vars], Vars] | None = None


def _assoc(api: Api, w: Vars) -> Vars:
    return _floating(api, "p1", w["sid"])


def _free_fip(api: Api, w: Vars) -> Vars:
    return _floating(api, "p1")


def _bulk_range(api: Api, w: Vars) -> Vars:
    _bulk_range.n += 1  # type: ignore[attr-defined]
    rng = f"198.51.100.{_bulk_range.n * 4}/30"  # type: ignore[attr-defined]
    F.create_pool(api.ctx, rng, pool="bulk")
    return {"range": rng}


_bulk_range.n = 0  # type: ignore[attr-defined]


def _unowned_net(api: Api, w: Vars) -> Vars:
    v = _tenant_net(
        api,
    )
    N.modify_network(api.ctx, v["tn"], disassociate_project=True)
    return v


def _new_instance(api: Api, w: Vars) -> Vars:
    return {"iid": str(uuid.uuid4())}


def _p1_instance(api: Api, w: Vars) -> Vars:
    sid, _ = boot(api.ctx, "p1")
    return {"iid": sid}


OK2 = {"admin": 200, "owner": 200, "other": 200}
ADMIN200 = {"admin": 200, "owner": 403, "other": 403}
ADMIN202 = {"admin": 202, "owner": 403, "other": 403}
OWNED200 = {"admin": 200, "owner": 200, "other": 404}
OWNED202 = {"admin": 202, "owner": 202, "other": 404}

C = "/v2/{p}"
ROWS = [
    Row("GET", C + "/os-floating-ip-pools", OK2),
    Row("GET", C + "/os-floating-ips", OK2),
    Row("POST", C + "/os-floating-ips", OK2, body={"pool": "nova"}),
    Row("GET", C + "/os-floating-ips/{fid}", OWNED200, prep=_assoc),
    Row("DELETE", C + "/os-floating-ips/{fid}", OWNED202, prep=_assoc),
    Row("POST", "/v2.1/{p}/servers/{sid}/action", OWNED202, body={"addFloatingIp": {"address": "{fip}"}},
        prep=_free_fip),
    Row("POST", C + "/servers/{sid}/action", OWNED202, body={"removeFloatingIp": {"address": "{fip}"}},
        prep=_assoc),
    # p2 with its own server and p1's address: the address is not found
    Row("POST", C + "/servers/{sid2}/action", {"admin": 403, "owner": 404, "other": 404},
        body={"addFloatingIp": {"address": "{fip}"}}, prep=_free_fip),
    Row("GET", C + "/servers/{sid}/os-virtual-interfaces", OWNED200),
    Row("GET", C + "/os-floating-ips-bulk", ADMIN200),
    Row("GET", C + "/os-floating-ips-bulk/compute-1", ADMIN200),
    Row("POST", C + "/os-floating-ips-bulk", ADMIN200, prep=lambda a, w: {"n": _bulk_range.n + 1},  # type: ignore[attr-defined]
        body={"floating_ips_bulk_create": {"ip_range": "192.0.2.{n}", "pool": "b"}}),
    Row("PUT", C + "/os-floating-ips-bulk/delete", ADMIN200, body={"ip_range": "{range}"}, prep=_bulk_range),
    Row("GET", C + "/os-fixed-ips/10.20.0.100", ADMIN200),
    Row("POST", C + "/os-fixed-ips/10.20.0.100/action", ADMIN202, body={"reserve": None}),
    Row("GET", C + "/os-networks", OK2),
    Row("GET", C + "/os-networks/{tn}", OWNED200, prep=lambda a, w: _tenant_net(a)),
    Row("POST", C + "/os-networks", ADMIN200, prep=lambda a, w: {"c": 100 + len(N.list_networks(a.ctx))},
        body={"network": {"label": "n", "cidr": "10.{c}.0.0/24", "bridge": "brn{c}"}}),
    Row("DELETE", C + "/os-networks/{tn}", ADMIN202, prep=_unowned_net),
    Row("POST", C + "/os-networks/{tn}/action", ADMIN202, body={"associate_host": "h9"},
        prep=lambda a, w: _tenant_net(a)),
    Row("POST", C + "/os-networks/add", ADMIN202, body={"id": "{tn}"}, prep=_unowned_net),
    Row("GET", C + "/os-tenant-networks", OK2),
    Row("GET", C + "/os-tenant-networks/{tn}", OWNED200, prep=lambda a, w: _tenant_net(a)),
    Row("POST", C + "/os-tenant-networks", OK2, prep=lambda a, w: {"c": 150 + len(N.list_networks(a.ctx))},
        body={"network": {"label": "t", "cidr": "10.{c}.0.0/24", "bridge": "brt{c}"}}),
    Row("DELETE", C + "/os-tenant-networks/{tn}", OWNED202, prep=lambda a, w: _tenant_net(a)),
    Row("GET", C + "/os-cloudpipe", {"admin": 200, "owner": 403, "other": 403}),
    # the matrix runs FlatDHCP: a cloudpipe needs the VLAN manager
    Row("POST", C + "/os-cloudpipe", {"admin": 400, "owner": 403, "other": 403},
        body={"cloudpipe": {"project_id": "p1"}}),
    Row("PUT", C + "/os-cloudpipe/configure-project", {"admin": 404, "owner": 403, "other": 403},
        body={"configure_project": {"vpn_ip": "192.0.2.1", "vpn_port": 1194}}),
    # native
    Row("POST", "/v1/instances", {"admin": 200, "owner": 200, "other": 403}, prep=_new_instance,
        body={"uuid": "{iid}", "project_id": "p1", "host": "compute-1"}),
    Row("GET", "/v1/instances/{iid}", OWNED200, prep=_p1_instance),
    Row("DELETE", "/v1/instances/{iid}", OWNED200, prep=_p1_instance),
    Row("GET", "/v1/fixed-ips", ADMIN200),
    Row("POST", "/v1/leases", ADMIN200,
        body={"event": "old", "address": "10.20.0.100", "mac": "fa:16:3e:00:00:01"}),
    Row("GET", "/v1/hosts", ADMIN200),
]  # fmt: skip


def _fill(value: Any, v: Vars) -> Any:
    if isinstance(value, str):
        return value.format(**v)
    if isinstance(value, dict):
        return {k: _fill(x, v) for k, x in value.items()}
    return value


def _dump(api: Api) -> dict[str, list[Any]]:
    out = {}
    with api.ctx.engine.connect() as conn:
        for t in metadata.sorted_tables:
            if t.name in ("tokens", "changes"):
                continue
            out[t.name] = [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
    return out


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with open_api(db_url, quota_floating_ips=-1) as a:  # every row allocates
        yield a


def test_authorization_matrix(api: Api) -> None:
    setup_network(api.ctx)
    setup_pool(api.ctx, "203.0.113.0/26")
    world = _world(api)
    revoked = tokens.create(api.ctx, "p1")["token"]
    tokens.revoke(api.ctx, revoked)
    callers = {"admin": (api.admin, "admin"), "owner": (api.member, "p1"), "other": (api.other, "p2")}
    failures = []
    for row in ROWS:
        label = f"{row.method} {row.path}"
        # refusals: all at once on one set of objects, nothing may change
        v = {**world, **(row.prep(api, world) if row.prep else {})}
        before = _dump(api)
        refused = [("none", None, "p1", 401), ("revoked", revoked, "p1", 401)]
        refused += [
            (who, callers[who][0], callers[who][1], st) for who, st in row.expect.items() if st >= 400
        ]
        for who, tok, project, status in refused:
            r = api.req(row.method, _fill(row.path, {**v, "p": project}), tok, json=_fill(row.body, v))
            if r.status_code != status:
                failures.append(f"{label} as {who}: {r.status_code} != {status}: {r.text[:200]}")
        if _dump(api) != before:
            failures.append(f"{label}: a refused request changed the database")
        # allowed callers, each on fresh objects
        for who, status in row.expect.items():
            if status >= 400:
                continue
            v = {**world, **(row.prep(api, world) if row.prep else {})}
            tok, project = callers[who]
            r = api.req(row.method, _fill(row.path, {**v, "p": project}), tok, json=_fill(row.body, v))
            if r.status_code != status:
                failures.append(f"{label} as {who}: {r.status_code} != {status}: {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_other_project_never_sees_floating_ips(api: Api) -> None:
    setup_network(api.ctx)
    setup_pool(api.ctx)
    w = _world(api)
    v = _floating(api, "p1", w["sid"])
    listed = api.req("GET", "/v2/p2/os-floating-ips", api.other).json()["floating_ips"]
    assert listed == []
    assert v["fip"] not in api.req("GET", "/v2/p2/os-floating-ips-bulk", api.other).text
    row = F.get(api.ctx, v["fip"])
    assert row["project_id"] == "p1" and row["instance_uuid"] == w["sid"]
