"""Server actions addFloatingIp / removeFloatingIp, and os-virtual-interfaces."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import ConfigDict, Field, model_validator

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
from novanet.api.common import warn_down
from novanet.domain.errors import InvalidInput, NotAssociated, NotFound
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service.context import Ctx
from novanet.service.tokens import Principal

router = APIRouter()
TAG = "compute: servers"
ServerId = Annotated[str, Path(description="Server (instance) UUID", max_length=64)]


class AddFloating(Model):
    address: str = Field(max_length=64)
    fixed_address: str | None = Field(default=None, max_length=64)


class RemoveFloating(Model):
    address: str = Field(max_length=64)


class ServerAction(Model):
    """One server action; novanet carries out only the network ones."""

    model_config = ConfigDict(extra="allow")
    addFloatingIp: AddFloating | None = None
    removeFloatingIp: RemoveFloating | None = None

    @model_validator(mode="after")
    def _one(self) -> ServerAction:
        given = set(self.model_fields_set) | set(self.model_extra or {})
        if len(given) != 1:
            raise ValueError("expected exactly one action, such as addFloatingIp or removeFloatingIp")
        return self


def _server(request: Request, ctx: Ctx, p: Principal, server_id: str) -> dict[str, Any]:
    try:
        inst = I.show(ctx, server_id)
    except NotFound:
        raise NotFound(f"server {server_id} not found") from None
    auth.check_owner(request, p, inst["project_id"], f"server {server_id}")
    return inst


@router.post("/servers/{server_id}/action", status_code=202, tags=[TAG])
def server_action(request: Request, p: ComputeCaller, server_id: ServerId, body: ServerAction) -> Response:
    """addFloatingIp (address, optional fixed_address) or removeFloatingIp (address)."""
    ctx = auth.get_ctx(request)
    response = Response(status_code=202)
    if body.addFloatingIp is not None:
        inst = _server(request, ctx, p, server_id)
        row = _floating(request, ctx, p, body.addFloatingIp.address)
        info = F.associate(
            ctx,
            row["address"],
            inst["uuid"],
            fixed_address=body.addFloatingIp.fixed_address,
            project_id=auth.scope(p),
        )
        warn_down(ctx, response, [info["host"]])
        return response
    if body.removeFloatingIp is not None:
        inst = _server(request, ctx, p, server_id)
        row = _floating(request, ctx, p, body.removeFloatingIp.address)
        if row["instance_uuid"] != inst["uuid"]:
            raise NotAssociated(f"floating IP {row['address']} is not associated with server {server_id}")
        host = row["host"]
        F.disassociate(ctx, row["address"], project_id=auth.scope(p))
        warn_down(ctx, response, [host])
        return response
    action = next(iter(body.model_extra or {"?": None}))
    # the compute service's actions (reboot, resize ...) are not the network service's
    raise InvalidInput(
        f"server action {action!r}: novanet carries out only addFloatingIp and removeFloatingIp"
    )


def _floating(request: Request, ctx: Ctx, p: Principal, address: str) -> dict[str, Any]:
    try:
        return F.get(ctx, address, project_id=auth.scope(p))
    except NotFound as exc:
        if not p.is_admin:
            auth.refuse(request, p, exc)
        raise


@router.get("/servers/{server_id}/os-virtual-interfaces", tags=[TAG])
def virtual_interfaces(request: Request, p: ComputeCaller, server_id: ServerId) -> dict[str, Any]:
    """The VIFs of a server: id and MAC address."""
    ctx = auth.get_ctx(request)
    inst = _server(request, ctx, p, server_id)
    return {
        "virtual_interfaces": [{"id": v["id"], "mac_address": v["address"]} for v in inst["network_info"]]
    }
