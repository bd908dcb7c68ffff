"""Native /v1 API: allocate / deallocate / show with the CLI's JSON, fixed IPs, leases,
hosts; and the agent heartbeat behind `service list`."""

from __future__ import annotations

import json
import uuid

from apihelpers import setup_network
from apisupport import Api, fault

from novanet.cli.main import main
from novanet.service import hosts as H
from novanet.service import instances as I


def test_allocate_show_deallocate_same_json_as_cli(api: Api, capsys: object) -> None:
    setup_network(api.ctx)
    uid = str(uuid.uuid4())
    body = {"uuid": uid, "project_id": "p1", "host": "compute-1"}
    resp = api.req("POST", "/v1/instances", api.service, json=body)
    assert resp.status_code == 200, resp.text
    info = resp.json()
    # what the CLI prints for the same instance is the same document
    assert info == I.show(api.ctx, uid)["network_info"]
    assert "no agent registered" in resp.headers["Warning"]
    H.heartbeat(api.ctx, "net-host")
    H.heartbeat(api.ctx, "compute-1")
    shown = api.req("GET", f"/v1/instances/{uid}", api.member).json()
    assert shown["project_id"] == "p1" and shown["network_info"] == info
    fault(api.req("GET", f"/v1/instances/{uid}", api.other), 404)
    fault(api.req("DELETE", f"/v1/instances/{uid}", api.other), 404)
    gone = api.req("DELETE", f"/v1/instances/{uid}", api.service)
    assert gone.status_code == 200 and gone.json()["uuid"] == uid
    fault(api.req("GET", f"/v1/instances/{uid}", api.admin), 404)
    # a second allocation of the same uuid after the first is gone works; with a live agent
    resp = api.req("POST", "/v1/instances", api.member, json=body)
    assert resp.status_code == 200 and "Warning" not in resp.headers


def test_cli_json_equals_api_json(api: Api, capsys: object) -> None:
    setup_network(api.ctx)
    uid = str(uuid.uuid4())
    url = api.ctx.engine.url.render_as_string(hide_password=False)
    args = [
        "--db",
        url,
        "--network-manager",
        "flatdhcp",
        "instance",
        "allocate",
        uid,
        "--project-id",
        "p1",
        "--host",
        "compute-1",
        "--json",
    ]
    assert main(args) == 0
    cli = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    api_view = api.req("GET", f"/v1/instances/{uid}", api.admin).json()["network_info"]
    assert cli == api_view


def test_allocate_refusals(api: Api) -> None:
    setup_network(api.ctx)
    uid = str(uuid.uuid4())
    fault(
        api.req("POST", "/v1/instances", api.member, json={"uuid": uid, "project_id": "p2", "host": "h"}), 403
    )
    msg = fault(api.req("POST", "/v1/instances", api.service, json={"uuid": uid, "host": "h"}), 400)[
        "message"
    ]
    assert "project_id" in msg
    fault(
        api.req("POST", "/v1/instances", api.service, json={"uuid": "x y", "project_id": "p", "host": "h"}),
        400,
    )
    fault(api.req("DELETE", f"/v1/instances/{uid}", api.service), 404)


def test_fixed_list_leases_and_hosts(api: Api) -> None:
    setup_network(api.ctx)
    uid = str(uuid.uuid4())
    info = api.req(
        "POST", "/v1/instances", api.service, json={"uuid": uid, "project_id": "p1", "host": "c1"}
    ).json()
    addr, mac = info[0]["network"]["subnets"][0]["ips"][0]["address"], info[0]["address"]
    ev = api.req("POST", "/v1/leases", api.service, json={"event": "add", "address": addr, "mac": mac})
    assert ev.status_code == 200 and ev.json()["action"] == "leased"
    rows = {r["address"]: r for r in api.req("GET", "/v1/fixed-ips", api.admin).json()}
    assert rows[addr]["leased"] is True and rows[addr]["instance_uuid"] == uid
    fault(api.req("GET", "/v1/fixed-ips", api.member), 403)
    fault(api.req("POST", "/v1/leases", api.member, json={"event": "add", "address": addr, "mac": mac}), 403)
    fault(
        api.req("POST", "/v1/leases", api.service, json={"event": "boom", "address": addr, "mac": mac}), 400
    )
    H.heartbeat(api.ctx, "c1", "serve")
    hosts = api.req("GET", "/v1/hosts", api.admin).json()
    assert [(h["host"], h["role"], h["state"]) for h in hosts] == [("c1", "serve", "up")]
    assert hosts[0]["duties"] == ["compute"]


def test_service_down_time(db_url: str, capsys: object) -> None:
    from apisupport import make_ctx

    ctx = make_ctx(db_url, service_down_time=1)
    try:
        H.heartbeat(ctx, "h1")
        url = ctx.engine.url.render_as_string(hide_password=False)
        assert main(["--db", url, "service", "list", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        assert [(r["host"], r["role"]) for r in out] == [("h1", "agent")]
        import time

        time.sleep(2.1)  # longer than service_down_time; the clock is the database's rows
        assert [r["state"] for r in H.list_services(ctx)] == ["down"]
        assert "is down" in H.agents_down(ctx, ["h1"])[0]
    finally:
        ctx.engine.dispose()
