"""os-cloudpipe (admin): list, create, configure-project.

The same use cases as `novanet vpn list / create / change` (novanet.service.vpn). The
"instance" of a cloudpipe is the agent's VPN appliance: its id is stable per project.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
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


# What a cloudpipe is in the Compute API (the service's view has more).
_FIELDS = ("project_id", "instance_id", "internal_ip", "public_ip", "public_port", "state", "created_at")


@router.get("/os-cloudpipe", tags=[TAG])
def list_cloudpipes(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """Every project's VPN with its state."""
    auth.require_admin(request, p, "listing cloudpipes")
    rows = vpn.list_vpns(auth.get_ctx(request))
    return {
        "cloudpipes": [
            {k: r[k] for k in _FIELDS if r.get(k) is not None} | {"state": r["state"]} for r in rows
        ]
    }


@router.post("/os-cloudpipe", tags=[TAG])
def create_cloudpipe(request: Request, p: ComputeCaller, body: CloudpipeCreate) -> dict[str, Any]:
    """Create a project's VPN (certificates, endpoint); the agent starts it. The answer
    names its appliance."""
    auth.require_admin(request, p, "creating cloudpipes")
    info = vpn.create(auth.get_ctx(request), body.cloudpipe.project_id)
    return {"instance_id": info["instance_id"]}


@router.put("/os-cloudpipe/configure-project", status_code=202, tags=[TAG])
def configure_project(request: Request, p: ComputeCaller, body: ConfigureProject) -> Response:
    """Point the caller's project's VPN at a public address and port."""
    auth.require_admin(request, p, "configuring cloudpipes")
    c = body.configure_project
    vpn.change(auth.get_ctx(request), p.project_id, c.vpn_ip, c.vpn_port)
    return Response(status_code=202)
