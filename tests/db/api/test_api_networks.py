"""Compute API networks: os-networks (admin fields for admins), os-networks-associate,
os-tenant-networks, os-fixed-ips, os-cloudpipe configure-project."""

from __future__ import annotations

import uuid
from pathlib import Path

from apihelpers import boot, fixed_of, setup_network
from apisupport import Api, check, fault, open_api

from novanet.domain.modes import VLAN
from novanet.service import instances as I
from novanet.service import networks as N


def test_os_networks_admin_and_member_views(api: Api) -> None:
    body = {"network": {"label": "net1", "cidr": "10.30.0.0/24", "bridge": "br100"}}
    made = check(api.req("POST", "/v2/admin/os-networks", api.admin, json=body), "create_network")["network"]
    assert made["cidr"] == "10.30.0.0/24" and made["label"] == "net1"
    listed = check(api.req("GET", "/v2/admin/os-networks", api.admin), "list_networks_admin")
    assert [n["id"] for n in listed["networks"]] == [made["id"]]
    check(api.req("GET", f"/v2/admin/os-networks/{made['id']}", api.admin), "get_network_admin")
    # a member sees the unowned network without the admin fields
    mine = check(api.req("GET", "/v2/p1/os-networks", api.member), "list_networks")
    assert [n["id"] for n in mine["networks"]] == [made["id"]]
    check(api.req("GET", f"/v2/p1/os-networks/{made['id']}", api.member), "get_network")
    fault(api.req("POST", "/v2/p1/os-networks", api.member, json=body), 403)
    fault(api.req("DELETE", f"/v2/p1/os-networks/{made['id']}", api.member), 403)
    # associate with p2: p1 no longer sees it
    check(
        api.req(
            "POST", f"/v2/admin/os-networks/{made['id']}/action", api.admin, json={"associate_host": "h1"}
        ),
        "network_action",
    )
    N.modify_network(api.ctx, made["id"], project="p2")
    assert check(api.req("GET", "/v2/p1/os-networks", api.member), "list_networks") == {"networks": []}
    fault(api.req("GET", f"/v2/p1/os-networks/{made['id']}", api.member), 404)
    net = N.get_network(api.ctx, made["id"])
    assert (net.host, net.project_id) == ("h1", "p2")
    for action in ("disassociate_host", "disassociate_project"):
        check(
            api.req("POST", f"/v2/admin/os-networks/{made['id']}/action", api.admin, json={action: None}),
            "network_action",
        )
    net = N.get_network(api.ctx, made["id"])
    assert (net.host, net.project_id) == (None, None)
    check(api.req("POST", "/v2/admin/os-networks/add", api.admin, json={"id": made["id"]}), "network_action")
    assert N.get_network(api.ctx, made["id"]).project_id == "admin"
    check(
        api.req("POST", f"/v2/admin/os-networks/{made['id']}/action", api.admin, json={"disassociate": None}),
        "network_action",
    )
    fault(api.req("POST", f"/v2/admin/os-networks/{made['id']}/action", api.admin, json={}), 400)
    # no id: any network without a project; then none is left
    check(api.req("POST", "/v2/admin/os-networks/add", api.admin), "network_action")
    assert N.get_network(api.ctx, made["id"]).project_id == "admin"
    fault(api.req("POST", "/v2/admin/os-networks/add", api.admin), 409)
    N.modify_network(api.ctx, made["id"], disassociate_project=True)
    check(api.req("DELETE", f"/v2/admin/os-networks/{made['id']}", api.admin), "delete_network")
    fault(api.req("GET", f"/v2/admin/os-networks/{made['id']}", api.admin), 404)


def test_os_networks_bad_bodies(api: Api) -> None:
    for body, field in (
        ({}, "network"),
        ({"network": {"label": "x"}}, "network.cidr"),
        ({"network": {"label": "x", "cidr": "10.0.0.0/24", "num_networks": "many"}}, "network.num_networks"),
    ):
        msg = fault(api.req("POST", "/v2/admin/os-networks", api.admin, json=body), 400)["message"]
        assert field in msg, msg
    msg = fault(
        api.req(
            "POST",
            "/v2/admin/os-networks",
            api.admin,
            json={"network": {"label": "x", "cidr": "10.0.0.0/33"}},
        ),
        400,
    )["message"]
    assert "10.0.0.0/33" in msg


def test_tenant_networks(api: Api) -> None:
    body = {"network": {"label": "mine", "cidr": "10.40.0.0/24", "bridge": "br101"}}
    made = check(api.req("POST", "/v2/p1/os-tenant-networks", api.member, json=body), "create_tenant_network")
    nid = made["network"]["id"]
    assert N.get_network(api.ctx, nid).project_id == "p1"
    listed = check(api.req("GET", "/v2/p1/os-tenant-networks", api.member), "list_tenant_networks")
    assert listed == {"networks": [{"id": nid, "cidr": "10.40.0.0/24", "label": "mine"}]}
    check(api.req("GET", f"/v2/p1/os-tenant-networks/{nid}", api.member), "get_tenant_network")
    assert check(api.req("GET", "/v2/p2/os-tenant-networks", api.other), "list_tenant_networks") == {
        "networks": []
    }
    fault(api.req("GET", f"/v2/p2/os-tenant-networks/{nid}", api.other), 404)
    fault(api.req("DELETE", f"/v2/p2/os-tenant-networks/{nid}", api.other), 404)
    uid, _ = boot(api.ctx, "p1")
    fault(api.req("DELETE", f"/v2/p1/os-tenant-networks/{nid}", api.member), 409)  # in use
    from novanet.service import instances as I

    I.deallocate_for_instance(api.ctx, uid)
    # never leased, force_dhcp_release: the address is free at once
    check(api.req("DELETE", f"/v2/p1/os-tenant-networks/{nid}", api.member), "delete_tenant_network")
    fault(api.req("GET", f"/v2/p1/os-tenant-networks/{nid}", api.member), 404)


def test_fixed_ips(api: Api) -> None:
    setup_network(api.ctx)
    uid, info = boot(api.ctx, "p1", host="compute-7")
    addr = fixed_of(info)
    out = check(api.req("GET", f"/v2/admin/os-fixed-ips/{addr}", api.admin), "get_fixed_ip")
    assert out["fixed_ip"] == {
        "address": addr,
        "cidr": "10.20.0.0/24",
        "host": "compute-7",
        "hostname": f"server-{uid}",
    }
    free = check(api.req("GET", "/v2/admin/os-fixed-ips/10.20.0.200", api.admin), "get_fixed_ip_unallocated")
    assert free["fixed_ip"]["host"] is None
    check(
        api.req("POST", "/v2/admin/os-fixed-ips/10.20.0.200/action", api.admin, json={"reserve": None}),
        "reserve_unreserve_fixed_ip",
    )
    rows = {r["address"]: r for r in __import__("novanet.service.fixed", fromlist=["x"]).list_fixed(api.ctx)}
    assert rows["10.20.0.200"]["reserved"] is True
    check(
        api.req("POST", "/v2/admin/os-fixed-ips/10.20.0.200/action", api.admin, json={"unreserve": "None"}),
        "reserve_unreserve_fixed_ip",
    )
    fault(api.req("POST", f"/v2/admin/os-fixed-ips/{addr}/action", api.admin, json={"reserve": None}), 409)
    fault(api.req("GET", "/v2/admin/os-fixed-ips/10.99.0.1", api.admin), 404)
    fault(api.req("GET", "/v2/admin/os-fixed-ips/banana", api.admin), 400)
    fault(api.req("POST", "/v2/admin/os-fixed-ips/10.20.0.200/action", api.admin, json={"x": 1}), 400)
    fault(api.req("GET", f"/v2/p1/os-fixed-ips/{addr}", api.member), 403)


def test_cloudpipe(api: Api) -> None:
    # configure-project acts on the caller's project's VLAN network: admin has none here
    body = {"configure_project": {"vpn_ip": "192.0.2.1", "vpn_port": "2000"}}
    fault(api.req("PUT", "/v2/admin/os-cloudpipe/configure-project", api.admin, json=body), 404)
    fault(api.req("PUT", "/v2/p1/os-cloudpipe/configure-project", api.member, json=body), 403)
    bad = {"configure_project": {"vpn_ip": "192.0.2.1", "vpn_port": 70000}}
    assert (
        "vpn_port"
        in fault(api.req("PUT", "/v2/admin/os-cloudpipe/configure-project", api.admin, json=bad), 400)[
            "message"
        ]
    )


def test_cloudpipe_vlan(db_url: str, tmp_path: Path) -> None:
    """os-cloudpipe create and list on a VLAN cloud, validated against the Compute API's
    schemas; the state is probed for real (nothing listens on 127.0.0.1:1000: down)."""
    opts = {"state_path": str(tmp_path), "cnt_vpn_clients": 4, "vpn_ip": "127.0.0.1"}
    with open_api(db_url, manager="vlan", **opts) as api:
        N.create_networks(api.ctx, VLAN, N.NetworkRequest(label="v", fixed_range_v4="10.77.0.0/24"))
        I.allocate_for_instance(api.ctx, VLAN, I.AllocateRequest(str(uuid.uuid4()), "p1", "h1"))
        assert check(api.req("GET", "/v2/admin/os-cloudpipe", api.admin), "list_cloudpipes") == {
            "cloudpipes": []
        }
        body = {"cloudpipe": {"project_id": "p1"}}
        created = check(api.req("POST", "/v2/admin/os-cloudpipe", api.admin, json=body), "create_cloudpipe")
        fault(api.req("POST", "/v2/p1/os-cloudpipe", api.member, json=body), 403)
        fault(
            api.req("POST", "/v2/admin/os-cloudpipe", api.admin, json={"cloudpipe": {"project_id": "p9"}}),
            404,
        )
        fault(
            api.req("POST", "/v2/admin/os-cloudpipe", api.admin, json={"cloudpipe": {"project_id": "../x"}}),
            400,
        )
        [pipe] = check(api.req("GET", "/v2/admin/os-cloudpipe", api.admin), "list_cloudpipes")["cloudpipes"]
        assert pipe["instance_id"] == created["instance_id"]
        keys = ("project_id", "internal_ip", "public_ip", "public_port", "state")
        assert [pipe[k] for k in keys] == ["p1", "10.77.0.2", "127.0.0.1", 1000, "down"]
        assert (tmp_path / "CA" / "keys" / "p1" / "server.key").exists()
