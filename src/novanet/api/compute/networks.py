"""os-networks, os-networks-associate and os-tenant-networks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field, model_validator

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
from novanet.api.compute import views
from novanet.domain.errors import InvalidInput, NotFound
from novanet.domain.models import Network
from novanet.service import networks as N
from novanet.service.context import Ctx
from novanet.service.tokens import Principal

router = APIRouter()

NetworkId = Annotated[str, Path(description="Network UUID", max_length=64)]
TAG = "compute: networks"
TENANT = "compute: tenant networks"


class NetworkFields(Model):
    label: str = Field(max_length=255)
    cidr: str = Field(max_length=43)
    num_networks: int | None = Field(default=None, ge=1, le=256)
    network_size: int | None = Field(default=None, ge=4, le=65536)
    vlan_start: int | None = Field(default=None, ge=1, le=4094)
    vpn_start: int | None = Field(default=None, ge=1, le=65535)
    bridge: str | None = Field(default=None, max_length=15)
    bridge_interface: str | None = Field(default=None, max_length=15)
    multi_host: bool | None = None
    dns1: str | None = Field(default=None, max_length=39)
    dns2: str | None = Field(default=None, max_length=39)
    gateway: str | None = Field(default=None, max_length=39)
    fixed_cidr: str | None = Field(default=None, max_length=43)
    project_id: str | None = Field(default=None, max_length=255)
    priority: int | None = Field(default=None, ge=0, le=2**31 - 1)


class NetworkCreate(Model):
    network: NetworkFields


class NetworkAdd(Model):
    id: str | None = Field(default=None, max_length=64)


class NetworkAction(Model):
    """One of disassociate, disassociate_host, disassociate_project (null), associate_host."""

    # the value is ignored (nova's samples send null; some clients send "None")
    disassociate: Any = None
    disassociate_host: Any = None
    disassociate_project: Any = None
    associate_host: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _one(self) -> NetworkAction:
        if len(self.model_fields_set) != 1:
            raise ValueError(
                "expected exactly one action: disassociate, disassociate_host,"
                " disassociate_project or associate_host"
            )
        if "associate_host" in self.model_fields_set and not self.associate_host:
            raise ValueError("associate_host needs a host name")
        return self


def _request(f: NetworkFields, project: str | None) -> N.NetworkRequest:
    return N.NetworkRequest(
        label=f.label,
        fixed_range_v4=f.cidr,
        num_networks=f.num_networks,
        network_size=f.network_size,
        vlan_start=f.vlan_start,
        vpn_start=f.vpn_start,
        bridge=f.bridge,
        bridge_interface=f.bridge_interface,
        multi_host=f.multi_host,
        dns1=f.dns1,
        dns2=f.dns2,
        gateway=f.gateway,
        fixed_cidr=f.fixed_cidr,
        project_id=project,
        priority=f.priority,
    )


def _visible(request: Request, ctx: Ctx, p: Principal, ref: str) -> Network:
    net = N.get_network(ctx, ref)
    if not p.is_admin and net.project_id not in (None, p.project_id):
        auth.check_owner(request, p, net.project_id, f"network {ref}")
    return net


def _view(ctx: Ctx, p: Principal, n: Network) -> dict[str, Any]:
    return views.network_admin(ctx, n) if p.is_admin else views.network(n)


@router.get("/os-networks", tags=[TAG])
def list_networks(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """Networks: all for an admin (every field); the project's and unowned ones otherwise."""
    ctx = auth.get_ctx(request)
    nets = N.list_networks(ctx, auth.scope(p))
    return {"networks": [_view(ctx, p, n) for n in nets]}


@router.get("/os-networks/{network_id}", tags=[TAG])
def show_network(request: Request, p: ComputeCaller, network_id: NetworkId) -> dict[str, Any]:
    """One network (another project's is not found for a member)."""
    ctx = auth.get_ctx(request)
    return {"network": _view(ctx, p, _visible(request, ctx, p, network_id))}


@router.post("/os-networks", tags=[TAG])
def create_network(request: Request, p: ComputeCaller, body: NetworkCreate) -> dict[str, Any]:
    """Create a network (admin); the answer is the first one made."""
    auth.require_admin(request, p, "creating networks")
    ctx = auth.get_ctx(request)
    made = N.create_networks(ctx, ctx.config.network_manager, _request(body.network, body.network.project_id))
    return {"network": views.network_admin(ctx, made[0])}


@router.post("/os-networks/add", status_code=202, tags=[TAG])
def add_network(request: Request, p: ComputeCaller, body: NetworkAdd | None = None) -> Response:
    """Associate a network (the one named, else any free one) with the caller's project (admin)."""
    auth.require_admin(request, p, "adding a network to a project")
    N.add_to_project(auth.get_ctx(request), p.project_id, body.id if body else None)
    return Response(status_code=202)


@router.delete("/os-networks/{network_id}", status_code=202, tags=[TAG])
def delete_network(request: Request, p: ComputeCaller, network_id: NetworkId) -> Response:
    """Delete a network without addresses in use (admin)."""
    auth.require_admin(request, p, "deleting networks")
    N.delete_network(auth.get_ctx(request), uuid=network_id)
    return Response(status_code=202)


@router.post("/os-networks/{network_id}/action", status_code=202, tags=[TAG])
def network_action(
    request: Request, p: ComputeCaller, network_id: NetworkId, body: NetworkAction
) -> Response:
    """disassociate (project and host), disassociate_host, disassociate_project, associate_host (admin)."""
    auth.require_admin(request, p, "changing network associations")
    ctx = auth.get_ctx(request)
    action = next(iter(body.model_fields_set))
    if action == "disassociate":
        N.modify_network(ctx, network_id, disassociate_project=True, disassociate_host=True)
    elif action == "disassociate_host":
        N.modify_network(ctx, network_id, disassociate_host=True)
    elif action == "disassociate_project":
        N.modify_network(ctx, network_id, disassociate_project=True)
    else:
        N.modify_network(ctx, network_id, host=body.associate_host)
    return Response(status_code=202)


# --- os-tenant-networks -------------------------------------------------------------


@router.get("/os-tenant-networks", tags=[TENANT])
def list_tenant(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """The networks the caller's project can use."""
    nets = N.list_networks(auth.get_ctx(request), p.project_id)
    return {"networks": [views.tenant_network(n) for n in nets]}


@router.get("/os-tenant-networks/{network_id}", tags=[TENANT])
def show_tenant(request: Request, p: ComputeCaller, network_id: NetworkId) -> dict[str, Any]:
    """One network the caller's project can use."""
    ctx = auth.get_ctx(request)
    net = N.get_network(ctx, network_id)
    if not p.is_admin and net.project_id not in (None, p.project_id):
        raise auth.refuse(request, p, _not_found(network_id))
    return {"network": views.tenant_network(net)}


@router.post("/os-tenant-networks", tags=[TENANT])
def create_tenant(request: Request, p: ComputeCaller, body: NetworkCreate) -> dict[str, Any]:
    """Create a network for the caller's project."""
    ctx = auth.get_ctx(request)
    if body.network.project_id not in (None, p.project_id) and not p.is_admin:
        raise auth.refuse(request, p, InvalidInput("network.project_id: a tenant network is the caller's"))
    made = N.create_networks(ctx, ctx.config.network_manager, _request(body.network, p.project_id))
    return {"network": views.tenant_network(made[0])}


@router.delete("/os-tenant-networks/{network_id}", status_code=202, tags=[TENANT])
def delete_tenant(request: Request, p: ComputeCaller, network_id: NetworkId) -> Response:
    """Delete one of the caller's project's networks (it must have no addresses in use)."""
    ctx = auth.get_ctx(request)
    net = N.get_network(ctx, network_id)
    if net.project_id != p.project_id and not p.is_admin:
        raise auth.refuse(request, p, _not_found(network_id))
    N.delete_network(ctx, uuid=net.uuid, disassociate=True)
    return Response(status_code=202)


def _not_found(ref: str) -> NotFound:
    return NotFound(f"network {ref} not found")
