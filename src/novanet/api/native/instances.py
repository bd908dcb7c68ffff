"""/v1/instances: allocate, deallocate and show an instance's networks (compute hosts).

Allocations and deallocations that arrive in one API process while a transaction is in
flight share the next transaction (group commit, api/coalesce.py); each request still gets
its own answer or its own error. /v1/instances/batch allocates (and .../batch/delete
deallocates) many instances in one request and one transaction, all or nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from novanet.api import auth
from novanet.api.auth import Caller
from novanet.api.coalesce import Coalescer
from novanet.api.common import Body as Model
from novanet.api.common import set_warning
from novanet.domain.errors import Forbidden
from novanet.service import hosts as H
from novanet.service import instances as I
from novanet.service.allocate import MAX_BATCH, check_request
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

    def request(self) -> I.AllocateRequest:
        return I.AllocateRequest(
            self.uuid,
            self.project_id,
            self.host,
            requested=[I.RequestedNetwork(n.uuid, n.address) for n in self.networks],
            vpn=self.vpn,
            hostname=self.hostname,
        )


class AllocateBatch(Model):
    instances: list[Allocate] = Field(min_length=1, max_length=MAX_BATCH)


class DeallocateBatch(Model):
    uuids: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True)
class Allocated:
    info: list[dict[str, Any]]
    warnings: list[str]  # the down agents this instance's change waits for


def _gateway_hosts(info: list[dict[str, Any]], host: str) -> list[str | None]:
    # the host whose agent must act: the instance's own (multi-host) or the network's
    return [host if v["network"]["multi_host"] else v["network"].get("host") or host for v in info]


def allocate_batch(ctx: Ctx, reqs: Sequence[I.AllocateRequest]) -> list[Allocated]:
    """Allocate ``reqs`` in one transaction, then read the heartbeats of every agent the
    batch needs once."""
    infos = I.allocate_many(ctx, ctx.config.network_manager, reqs)
    wanted = [{h for h in _gateway_hosts(info, r.host) if h} for r, info in zip(reqs, infos, strict=True)]
    down = H.agents_down_by_host(ctx, set().union(*wanted))
    return [
        Allocated(info, [down[h] for h in sorted(w) if h in down])
        for info, w in zip(infos, wanted, strict=True)
    ]


@dataclass
class Coalescers:
    """The group-commit queues of one API process."""

    allocate: Coalescer[I.AllocateRequest, Allocated]
    deallocate: Coalescer[str, dict[str, Any]]

    def close(self) -> None:
        self.allocate.close()
        self.deallocate.close()


def coalescers(ctx: Ctx) -> Coalescers:
    size = max(1, ctx.config.api_group_commit)
    return Coalescers(
        Coalescer("allocate", lambda reqs: allocate_batch(ctx, reqs), size),
        Coalescer("deallocate", lambda uuids: I.deallocate_many(ctx, uuids), size),
    )


def _queues(request: Request) -> Coalescers:
    queues: Coalescers = request.app.state.coalescers
    return queues


def _may_allocate(request: Request, p: Principal, project_id: str) -> None:
    if not (p.is_admin or p.is_service) and project_id != p.project_id:
        raise auth.refuse(
            request, p, Forbidden(f"project {p.project_id} cannot allocate for project {project_id}")
        )


def _owned(request: Request, ctx: Ctx, p: Principal, uuid: str) -> dict[str, Any]:
    inst = I.show(ctx, uuid)
    if not (p.is_admin or p.is_service):
        auth.check_owner(request, p, inst["project_id"], f"instance {uuid}")
    return inst


@router.post("/instances", tags=[TAG])
async def allocate(request: Request, p: Caller, body: Allocate, response: Response) -> list[dict[str, Any]]:
    """Give an instance its VIFs and fixed IPs: the answer is its network info, the JSON of
    `novanet instance allocate --json`. A down agent is named in a Warning header."""
    _may_allocate(request, p, body.project_id)
    ctx = auth.get_ctx(request)
    req = body.request()
    check_request(ctx.config.network_manager, req)  # bad input: refused before queueing
    done = await asyncio.wrap_future(_queues(request).allocate.submit(req))
    set_warning(response, done.warnings)
    return done.info


@router.post("/instances/batch", tags=[TAG])
def allocate_many(request: Request, p: Caller, body: AllocateBatch, response: Response) -> dict[str, Any]:
    """Allocate for several instances in one transaction, all or nothing: the answer holds
    each one's uuid and network info, in order; any refusal refuses the whole batch and
    changes nothing. Down agents are named in a Warning header."""
    for item in body.instances:
        _may_allocate(request, p, item.project_id)
    done = allocate_batch(auth.get_ctx(request), [item.request() for item in body.instances])
    set_warning(response, sorted({w for d in done for w in d.warnings}))
    return {
        "instances": [
            {"uuid": item.uuid, "network_info": d.info} for item, d in zip(body.instances, done, strict=True)
        ]
    }


@router.get("/instances/{uuid}", tags=[TAG])
def show(request: Request, p: Caller, uuid: Uuid) -> dict[str, Any]:
    """An instance's project, host, hostname and network info."""
    return _owned(request, auth.get_ctx(request), p, uuid)


@router.delete("/instances/{uuid}", tags=[TAG])
async def deallocate(request: Request, p: Caller, uuid: Uuid) -> dict[str, Any]:
    """Release an instance's addresses (the JSON of `novanet instance deallocate --json`)."""
    ctx = auth.get_ctx(request)
    if not (p.is_admin or p.is_service):
        # a member: its own project's instances only
        await asyncio.to_thread(_owned, request, ctx, p, uuid)
    res: dict[str, Any] = await asyncio.wrap_future(_queues(request).deallocate.submit(uuid))
    return res


@router.post("/instances/batch/delete", tags=[TAG])
def deallocate_many(request: Request, p: Caller, body: DeallocateBatch) -> dict[str, Any]:
    """Deallocate several instances in one transaction, all or nothing (admin or service)."""
    auth.require_admin_or_service(request, p, "batch deallocation")
    return {"instances": I.deallocate_many(auth.get_ctx(request), body.uuids)}
