"""Compute API floating IPs: pools, allocate/show/list/release, bulk, add/removeFloatingIp;
every answer validated against tempest's (or the authored) schema."""

from __future__ import annotations

from apihelpers import boot, fixed_of, setup_network, setup_pool
from apisupport import Api, check, fault

from novanet.service import floating as F


def test_pools_and_allocate_list_show_release(api: Api) -> None:
    setup_pool(api.ctx)
    body = check(api.req("GET", "/v2/p1/os-floating-ip-pools", api.member), "list_floating_ip_pools")
    assert body == {"floating_ip_pools": [{"name": "nova"}]}
    assert check(api.req("GET", "/v2/p1/os-floating-ips", api.member), "list_floating_ips") == {
        "floating_ips": []
    }
    made = check(
        api.req("POST", "/v2.1/p1/os-floating-ips", api.member, json={"pool": "nova"}),
        "create_get_floating_ip",
    )
    fip = made["floating_ip"]
    assert fip["ip"] == "203.0.113.1" and fip["pool"] == "nova" and fip["instance_id"] is None
    # no body at all: the default pool
    second = check(api.req("POST", "/v2/p1/os-floating-ips", api.member), "create_get_floating_ip")
    assert second["floating_ip"]["ip"] == "203.0.113.2"
    listed = check(api.req("GET", "/v2/p1/os-floating-ips", api.member), "list_floating_ips")
    assert [f["ip"] for f in listed["floating_ips"]] == ["203.0.113.1", "203.0.113.2"]
    shown = check(api.req("GET", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), "create_get_floating_ip")
    assert shown == made
    check(api.req("DELETE", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), "delete_floating_ip")
    assert F.get(api.ctx, "203.0.113.1")["project_id"] is None  # back in the pool
    fault(api.req("GET", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), 404)
    fault(api.req("DELETE", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), 404)


def test_allocate_refusals(api: Api) -> None:
    setup_pool(api.ctx, "203.0.113.1")
    fault(api.req("POST", "/v2/p1/os-floating-ips", api.member, json={"pool": "nope"}), 404)
    check(api.req("POST", "/v2/p1/os-floating-ips", api.member), "create_get_floating_ip")
    msg = fault(api.req("POST", "/v2/p2/os-floating-ips", api.other), 404)["message"]  # pool empty
    assert "no more floating IPs" in msg
    fault(api.req("POST", "/v2/p1/os-floating-ips", api.member, json={"pool": 5}), 400)
    fault(api.req("GET", "/v2/p1/os-floating-ips/not-an-ip", api.member), 400)
    # a Unicode digit is not an id (schemathesis found the 500 this once was)
    fault(api.req("GET", "/v2/p1/os-floating-ips/\u00b9", api.member), 400)


def test_quota_is_413_over_limit(db_url: str) -> None:
    from apisupport import make_ctx
    from fastapi.testclient import TestClient

    from novanet.api.app import create_app
    from novanet.service import tokens

    ctx = make_ctx(db_url, quota_floating_ips=1)
    try:
        setup_pool(ctx)
        tok = tokens.create(ctx, "p1")["token"]
        with TestClient(create_app(ctx)) as c:
            assert c.post("/v2/p1/os-floating-ips", headers={"X-Auth-Token": tok}).status_code == 200
            fault(c.post("/v2/p1/os-floating-ips", headers={"X-Auth-Token": tok}), 413)
    finally:
        ctx.engine.dispose()


def test_bulk_admin(api: Api) -> None:
    body = {"floating_ips_bulk_create": {"ip_range": "192.0.2.0/30", "pool": "public", "interface": "eth1"}}
    out = check(
        api.req("POST", "/v2/admin/os-floating-ips-bulk", api.admin, json=body), "create_floating_ips_bulk"
    )
    assert out == body
    listed = check(api.req("GET", "/v2/admin/os-floating-ips-bulk", api.admin), "list_floating_ips_bulk")
    assert [f["address"] for f in listed["floating_ip_info"]] == ["192.0.2.1", "192.0.2.2"]
    assert listed["floating_ip_info"][0]["interface"] == "eth1"
    by_host = check(
        api.req("GET", "/v2/admin/os-floating-ips-bulk/nohost", api.admin), "list_floating_ips_bulk"
    )
    assert by_host == {"floating_ip_info": []}
    fault(api.req("POST", "/v2/admin/os-floating-ips-bulk", api.admin, json=body), 409)  # exists
    bad = {"floating_ips_bulk_create": {"ip_range": "300.1.1.1"}}
    assert (
        "300.1.1.1"
        in fault(api.req("POST", "/v2/admin/os-floating-ips-bulk", api.admin, json=bad), 400)["message"]
    )
    out = check(
        api.req("PUT", "/v2/admin/os-floating-ips-bulk/delete", api.admin, json={"ip_range": "192.0.2.0/30"}),
        "delete_floating_ips_bulk",
    )
    assert out == {"floating_ips_bulk_delete": "192.0.2.0/30"}
    assert F.list_floating(api.ctx) == []


def test_add_remove_floating_ip(api: Api) -> None:
    setup_network(api.ctx)
    setup_pool(api.ctx)
    uid, info = boot(api.ctx, "p1", host="compute-1")
    fip = api.req("POST", "/v2/p1/os-floating-ips", api.member).json()["floating_ip"]
    act = {"addFloatingIp": {"address": fip["ip"]}}
    resp = api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json=act)
    check(resp, "add_remove_floating_ip")
    # no agent runs for the NAT host: the answer says so
    assert "no agent registered" in resp.headers["Warning"]
    shown = check(api.req("GET", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), "create_get_floating_ip")
    assert shown["floating_ip"]["instance_id"] == uid
    assert shown["floating_ip"]["fixed_ip"] == fixed_of(info)
    # removing from another server of the project: 422, as the original
    uid2, _ = boot(api.ctx, "p1")
    rm = {"removeFloatingIp": {"address": fip["ip"]}}
    assert api.req("POST", f"/v2/p1/servers/{uid2}/action", api.member, json=rm).status_code == 422
    check(api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json=rm), "add_remove_floating_ip")
    assert F.get(api.ctx, fip["ip"])["instance_uuid"] is None
    # unknown fixed address of the server
    bad = {"addFloatingIp": {"address": fip["ip"], "fixed_address": "10.99.0.1"}}
    fault(api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json=bad), 400)
    fault(api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json={"reboot": {}}), 400)
    fault(api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json={}), 400)
    fault(api.req("POST", f"/v2/p1/servers/{uid}/action", api.member, json={"addFloatingIp": {}}), 400)


def test_delete_associated_floating_ip_disassociates_first(api: Api) -> None:
    setup_network(api.ctx)
    setup_pool(api.ctx)
    uid, _ = boot(api.ctx, "p1")
    fip = api.req("POST", "/v2/p1/os-floating-ips", api.member).json()["floating_ip"]
    api.req(
        "POST", f"/v2/p1/servers/{uid}/action", api.member, json={"addFloatingIp": {"address": fip["ip"]}}
    )
    check(api.req("DELETE", f"/v2/p1/os-floating-ips/{fip['id']}", api.member), "delete_floating_ip")
    row = F.get(api.ctx, fip["ip"])
    assert row["project_id"] is None and row["instance_uuid"] is None


def test_virtual_interfaces(api: Api) -> None:
    setup_network(api.ctx)
    uid, info = boot(api.ctx, "p1")
    resp = api.req("GET", f"/v2.1/p1/servers/{uid}/os-virtual-interfaces", api.member)
    assert resp.status_code == 200
    assert resp.json() == {"virtual_interfaces": [{"id": info[0]["id"], "mac_address": info[0]["address"]}]}
    fault(api.req("GET", f"/v2.1/p2/servers/{uid}/os-virtual-interfaces", api.other), 404)
