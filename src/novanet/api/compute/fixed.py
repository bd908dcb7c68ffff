"""os-fixed-ips (admin): show, reserve, unreserve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import model_validator

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
from novanet.service import fixed as X

router = APIRouter()
TAG = "compute: fixed IPs (admin)"
Address = Annotated[str, Path(description="The fixed IP", max_length=64)]


class FixedAction(Model):
    reserve: Any = None
    unreserve: Any = None

    @model_validator(mode="after")
    def _one(self) -> FixedAction:
        if len(self.model_fields_set) != 1:
            raise ValueError("expected exactly one action: reserve or unreserve")
        return self


@router.get("/os-fixed-ips/{address}", tags=[TAG])
def show_fixed(request: Request, p: ComputeCaller, address: Address) -> dict[str, Any]:
    """A fixed IP: its network's range, and its instance's host and hostname if allocated."""
    auth.require_admin(request, p, "showing fixed IPs")
    row = X.get(auth.get_ctx(request), address)
    return {
        "fixed_ip": {
            "address": row["address"],
            "cidr": row["cidr"],
            "host": row["host"],
            "hostname": row["hostname"],
        }
    }


@router.post("/os-fixed-ips/{address}/action", status_code=202, tags=[TAG])
def fixed_action(request: Request, p: ComputeCaller, address: Address, body: FixedAction) -> Response:
    """reserve or unreserve a fixed IP (admin)."""
    auth.require_admin(request, p, "reserving fixed IPs")
    X.set_reserved(auth.get_ctx(request), address, "reserve" in body.model_fields_set)
    return Response(status_code=202)
