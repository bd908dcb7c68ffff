"""os-cloudpipe (admin): list, create, configure-project.

Wired to the VPN use cases that exist in novanet.service.vpn; an operation whose use case
is not there yet answers 501 notImplemented, saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
from novanet.domain.errors import NotImplementedYet
from novanet.service import vpn

router = APIRouter()
TAG = "compute: cloudpipe (admin)"


class CloudpipeInner(Model):
    project_id: str = Field(max_length=255)


class CloudpipeCreate(Model):
    cloudpipe: CloudpipeInner


class ConfigureInner(Model):
    vpn_ip: str = Field(max_length=64)
    # nova's sample sends the port as a string
    vpn_port: Annotated[int, Field(ge=1, le=65535)]


class ConfigureProject(Model):
    configure_project: ConfigureInner


def _missing(what: str) -> NotImplementedYet:
    return NotImplementedYet(f"{what} is not available in this novanet yet (the VPN service lacks it)")


@router.get("/os-cloudpipe", tags=[TAG])
def list_cloudpipes(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """Every project's VPN with its state."""
    auth.require_admin(request, p, "listing cloudpipes")
    fn = getattr(vpn, "list_vpns", None)
    if fn is None:
        raise _missing("listing cloudpipes")
    return {"cloudpipes": fn(auth.get_ctx(request))}


@router.post("/os-cloudpipe", tags=[TAG])
def create_cloudpipe(request: Request, p: ComputeCaller, body: CloudpipeCreate) -> dict[str, Any]:
    """Start a project's VPN; the answer names its instance."""
    auth.require_admin(request, p, "creating cloudpipes")
    fn = getattr(vpn, "create", None)
    if fn is None:
        raise _missing("creating a cloudpipe")
    info = fn(auth.get_ctx(request), body.cloudpipe.project_id)
    return {"instance_id": info["instance_id"]}


@router.put("/os-cloudpipe/configure-project", status_code=202, tags=[TAG])
def configure_project(request: Request, p: ComputeCaller, body: ConfigureProject) -> Response:
    """Point the caller's project's VPN at a public address and port."""
    auth.require_admin(request, p, "configuring cloudpipes")
    c = body.configure_project
    vpn.change(auth.get_ctx(request), p.project_id, c.vpn_ip, c.vpn_port)
    return Response(status_code=202)
