"""Native API: group commit of concurrent allocations, and the batch endpoints."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apihelpers import boot, fixed_of, setup_network
from apisupport import Api, fault

from novanet.service import instances as I


def test_concurrent_allocations_each_get_their_answer_and_a_bad_one_its_4xx(api: Api) -> None:
    net = setup_network(api.ctx)
    _, info = boot(api.ctx)
    taken = fixed_of(info)
    bodies: list[dict[str, Any]] = [
        {"uuid": str(uuid.uuid4()), "project_id": "p1", "host": f"compute-{i % 3}"} for i in range(24)
    ]
    bodies[7]["networks"] = [{"uuid": net.uuid, "address": taken}]  # in use: 409
    with ThreadPoolExecutor(16) as pool:
        resps = list(pool.map(lambda b: api.req("POST", "/v1/instances", api.service, json=b), bodies))
    assert fault(resps[7], 409)["message"].startswith(f"address {taken} is already in use")
    addresses = []
    for i, (body, resp) in enumerate(zip(bodies, resps, strict=True)):
        if i == 7:
            continue
        assert resp.status_code == 200, resp.text
        assert resp.json() == I.show(api.ctx, body["uuid"])["network_info"]
        assert "no agent registered" in resp.headers["Warning"]
        addresses.append(fixed_of(resp.json()))
    assert len(set(addresses)) == 23 and taken not in addresses
    fault(api.req("GET", f"/v1/instances/{bodies[7]['uuid']}", api.admin), 404)
    # deallocations coalesce the same way; one unknown instance gets its own 404
    uuids = [b["uuid"] for i, b in enumerate(bodies) if i != 7] + [str(uuid.uuid4())]
    with ThreadPoolExecutor(16) as pool:
        gone = list(pool.map(lambda u: api.req("DELETE", f"/v1/instances/{u}", api.service), uuids))
    assert [g.status_code for g in gone] == [200] * 23 + [404]
    assert [g.json()["freed"] for g in gone[:-1]] == [[a] for a in addresses]
    queues = api.client.app.state.coalescers  # type: ignore[attr-defined]
    assert queues.allocate.items == 23 and queues.deallocate.items == 23  # committed ones


def test_batch_endpoints_all_or_nothing(api: Api) -> None:
    net = setup_network(api.ctx)
    uids = [str(uuid.uuid4()) for _ in range(5)]
    body = {"instances": [{"uuid": u, "project_id": "p1", "host": "compute-1"} for u in uids]}
    resp = api.req("POST", "/v1/instances/batch", api.member, json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()["instances"]
    assert [o["uuid"] for o in out] == uids
    assert [o["network_info"] for o in out] == [I.show(api.ctx, u)["network_info"] for u in uids]
    taken = fixed_of(out[0]["network_info"])
    # one member asks for a taken address: the whole batch is refused, nothing is allocated
    new = [str(uuid.uuid4()) for _ in range(3)]
    bad = {"instances": [{"uuid": u, "project_id": "p1", "host": "compute-1"} for u in new]}
    bad["instances"][1]["networks"] = [{"uuid": net.uuid, "address": taken}]
    fault(api.req("POST", "/v1/instances/batch", api.service, json=bad), 409)
    for u in new:
        fault(api.req("GET", f"/v1/instances/{u}", api.admin), 404)
    # a member may not allocate for another project, even inside a batch
    other = {
        "instances": [
            {"uuid": new[0], "project_id": "p1", "host": "h"},
            {"uuid": new[1], "project_id": "p2", "host": "h"},
        ]
    }
    fault(api.req("POST", "/v1/instances/batch", api.member, json=other), 403)
    fault(api.req("POST", "/v1/instances/batch", api.service, json={"instances": []}), 400)
    # batch deallocation: admin or service only; an unknown member refuses it all
    fault(api.req("POST", "/v1/instances/batch/delete", api.member, json={"uuids": uids}), 403)
    fault(api.req("POST", "/v1/instances/batch/delete", api.service, json={"uuids": [*uids, new[0]]}), 404)
    resp = api.req("POST", "/v1/instances/batch/delete", api.service, json={"uuids": uids})
    assert resp.status_code == 200, resp.text
    assert [r["uuid"] for r in resp.json()["instances"]] == uids
    for u in uids:
        fault(api.req("GET", f"/v1/instances/{u}", api.admin), 404)
