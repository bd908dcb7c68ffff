"""/v1/fixed-ips, /v1/leases, /v1/hosts: operators and the DHCP side."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from novanet.api import auth
from novanet.api.auth import Caller
from novanet.api.common import Body as Model
from novanet.service import fixed as X
from novanet.service import hosts as H

router = APIRouter()


class LeaseEvent(Model):
    event: Literal["add", "old", "del"] = Field(description="dnsmasq's lease script action")
    address: str = Field(max_length=64)
    mac: str = Field(max_length=32)


@router.get("/fixed-ips", tags=["native: fixed IPs"])
def list_fixed(
    request: Request, p: Caller, host: Annotated[str | None, Query(max_length=255)] = None
) -> list[dict[str, Any]]:
    """Every fixed IP with its flags (the JSON of `novanet fixed list --json`; admin)."""
    auth.require_admin(request, p, "listing fixed IPs")
    return X.list_fixed(auth.get_ctx(request), host)


@router.post("/leases", tags=["native: leases"])
def lease_event(request: Request, p: Caller, body: LeaseEvent) -> dict[str, Any]:
    """A DHCP lease event: add/old (leased) or del (lease gone) for address and MAC (service)."""
    auth.require_admin_or_service(request, p, "reporting lease events")
    ctx = auth.get_ctx(request)
    fn = X.release if body.event == "del" else X.lease
    res = fn(ctx, body.address, body.mac)
    return {"address": body.address, "mac": body.mac, "event": body.event, **_result(res)}


def _result(res: X.LeaseResult) -> dict[str, Any]:
    return {"action": res.action}


@router.get("/hosts", tags=["native: hosts"])
def list_hosts(request: Request, p: Caller) -> list[dict[str, Any]]:
    """Hosts with an agent: role, duties, last heartbeat, up/down (`novanet service list --json`)."""
    auth.require_admin_or_service(request, p, "listing hosts")
    return H.list_services(auth.get_ctx(request))


@router.get("/agents", tags=["native: hosts"], include_in_schema=False)
def list_agents(request: Request, p: Caller) -> list[dict[str, Any]]:
    return list_hosts(request, p)
