"""/v1/instances: allocate, deallocate and show an instance's networks (compute hosts)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from novanet.api import auth
from novanet.api.auth import Caller
from novanet.api.common import Body as Model
from novanet.api.common import warn_down
from novanet.domain.errors import Forbidden
from novanet.service import instances as I
from novanet.service.context import Ctx
from novanet.service.tokens import Principal

router = APIRouter()
TAG = "native: instances"
Uuid = Annotated[str, Path(description="Instance UUID", max_length=64)]


class RequestedNetwork(Model):
    uuid: str = Field(max_length=64, description="Network UUID")
    address: str | None = Field(default=None, max_length=64, description="The fixed IP wanted")


class Allocate(Model):
    uuid: str = Field(max_length=64, description="Instance UUID")
    project_id: str = Field(max_length=255)
    host: str = Field(max_length=255, description="Compute host of the instance")
    networks: list[RequestedNetwork] = Field(default_factory=list, max_length=64)
    vpn: bool = False
    hostname: str | None = Field(default=None, max_length=63)


def _gateway_hosts(info: list[dict[str, Any]], host: str) -> list[str | None]:
    # the host whose agent must act: the instance's own (multi-host) or the network's
    return [host if v["network"]["multi_host"] else v["network"].get("host") or host for v in info]


def _owned(request: Request, ctx: Ctx, p: Principal, uuid: str) -> dict[str, Any]:
    inst = I.show(ctx, uuid)
    if not (p.is_admin or p.is_service):
        auth.check_owner(request, p, inst["project_id"], f"instance {uuid}")
    return inst


@router.post("/instances", tags=[TAG])
def allocate(request: Request, p: Caller, body: Allocate, response: Response) -> list[dict[str, Any]]:
    """Give an instance its VIFs and fixed IPs: the answer is its network info, the JSON of
    `novanet instance allocate --json`. A down agent is named in a Warning header."""
    if not (p.is_admin or p.is_service) and body.project_id != p.project_id:
        raise auth.refuse(
            request, p, Forbidden(f"project {p.project_id} cannot allocate for project {body.project_id}")
        )
    ctx = auth.get_ctx(request)
    req = I.AllocateRequest(
        body.uuid,
        body.project_id,
        body.host,
        requested=[I.RequestedNetwork(n.uuid, n.address) for n in body.networks],
        vpn=body.vpn,
        hostname=body.hostname,
    )
    info = I.allocate_for_instance(ctx, ctx.config.network_manager, req)
    warn_down(ctx, response, _gateway_hosts(info, body.host))
    return info


@router.get("/instances/{uuid}", tags=[TAG])
def show(request: Request, p: Caller, uuid: Uuid) -> dict[str, Any]:
    """An instance's project, host, hostname and network info."""
    return _owned(request, auth.get_ctx(request), p, uuid)


@router.delete("/instances/{uuid}", tags=[TAG])
def deallocate(request: Request, p: Caller, uuid: Uuid) -> dict[str, Any]:
    """Release an instance's addresses (the JSON of `novanet instance deallocate --json`)."""
    ctx = auth.get_ctx(request)
    if not (p.is_admin or p.is_service):
        _owned(request, ctx, p, uuid)  # a member: its own project's instances only
    return I.deallocate_for_instance(ctx, uuid)
