"""os-floating-ip-pools, os-floating-ips and os-floating-ips-bulk."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response

from novanet.api import auth
from novanet.api.auth import ComputeCaller
from novanet.api.common import Body as Model
from novanet.service import floating as F

router = APIRouter()

FloatingId = Annotated[str, Path(description="Floating IP id (or address)", max_length=64)]


class FloatingCreate(Model):
    pool: str | None = None


class BulkCreateInner(Model):
    ip_range: str
    pool: str | None = None
    interface: str | None = None


class BulkCreate(Model):
    floating_ips_bulk_create: BulkCreateInner


class BulkDelete(Model):
    ip_range: str


def view(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "ip": r["address"],
        "pool": r["pool"],
        "fixed_ip": r["fixed_address"],
        "instance_id": r["instance_uuid"],
    }


def bulk_view(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": r["address"],
        "fixed_ip": r["fixed_address"],
        "instance_uuid": r["instance_uuid"],
        "interface": r["interface"],
        "pool": r["pool"],
        "project_id": r["project_id"],
    }


@router.get("/os-floating-ip-pools", tags=["compute: floating IPs"])
def list_pools(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """The floating IP pools."""
    return {"floating_ip_pools": [{"name": n} for n in F.pools(auth.get_ctx(request))]}


@router.get("/os-floating-ips", tags=["compute: floating IPs"])
def list_floating(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """The floating IPs of the caller's project."""
    rows = F.list_floating(auth.get_ctx(request), project_id=p.project_id)
    return {"floating_ips": [view(r) for r in rows]}


@router.get("/os-floating-ips/{floating_ip_id}", tags=["compute: floating IPs"])
def show_floating(request: Request, p: ComputeCaller, floating_ip_id: FloatingId) -> dict[str, Any]:
    """One floating IP of the caller's project (another project's is not found)."""
    try:
        row = F.get(auth.get_ctx(request), floating_ip_id, project_id=auth.scope(p))
    except Exception as exc:
        _log_hidden(request, p, exc)
        raise
    return {"floating_ip": view(row)}


@router.post("/os-floating-ips", tags=["compute: floating IPs"])
def allocate_floating(
    request: Request, p: ComputeCaller, body: Annotated[FloatingCreate | None, Body()] = None
) -> dict[str, Any]:
    """Reserve a floating IP of a pool (default_floating_pool) for the caller's project."""
    ctx = auth.get_ctx(request)
    info = F.allocate(ctx, p.project_id, pool=body.pool if body else None)
    return {"floating_ip": view(info)}


@router.delete("/os-floating-ips/{floating_ip_id}", status_code=202, tags=["compute: floating IPs"])
def release_floating(request: Request, p: ComputeCaller, floating_ip_id: FloatingId) -> Response:
    """Give a floating IP back to its pool, disassociating it first if needed."""
    ctx = auth.get_ctx(request)
    try:
        row = F.get(ctx, floating_ip_id, project_id=auth.scope(p))
    except Exception as exc:
        _log_hidden(request, p, exc)
        raise
    F.release(ctx, row["address"], project_id=auth.scope(p), disassociate=True)
    return Response(status_code=202)


def _log_hidden(request: Request, p: Any, exc: Exception) -> None:
    from novanet.domain.errors import NotFound

    if isinstance(exc, NotFound) and not p.is_admin:
        auth.refuse(request, p, exc)


# --- os-floating-ips-bulk (admin) ------------------------------------------------------


@router.get("/os-floating-ips-bulk", tags=["compute: floating IPs bulk (admin)"])
def bulk_list(request: Request, p: ComputeCaller) -> dict[str, Any]:
    """Every floating IP (admin)."""
    auth.require_admin(request, p, "listing every floating IP")
    return {"floating_ip_info": [bulk_view(r) for r in F.list_floating(auth.get_ctx(request))]}


@router.get("/os-floating-ips-bulk/{host}", tags=["compute: floating IPs bulk (admin)"])
def bulk_list_host(
    request: Request, p: ComputeCaller, host: Annotated[str, Path(max_length=255)]
) -> dict[str, Any]:
    """The floating IPs NATed on one host (admin)."""
    auth.require_admin(request, p, "listing floating IPs by host")
    rows = F.list_floating(auth.get_ctx(request), host=host)
    return {"floating_ip_info": [bulk_view(r) for r in rows]}


@router.post("/os-floating-ips-bulk", tags=["compute: floating IPs bulk (admin)"])
def bulk_create(request: Request, p: ComputeCaller, body: BulkCreate) -> dict[str, Any]:
    """Add the addresses of a range to a pool (admin)."""
    auth.require_admin(request, p, "creating floating IPs")
    ctx = auth.get_ctx(request)
    b = body.floating_ips_bulk_create
    F.create_pool(ctx, b.ip_range, pool=b.pool, interface=b.interface)
    return {
        "floating_ips_bulk_create": {
            "ip_range": b.ip_range,
            "pool": b.pool or ctx.config.default_floating_pool,
            "interface": b.interface or ctx.config.public_interface,
        }
    }


@router.put("/os-floating-ips-bulk/delete", tags=["compute: floating IPs bulk (admin)"])
def bulk_delete(request: Request, p: ComputeCaller, body: BulkDelete) -> dict[str, Any]:
    """Remove the addresses of a range (admin); refused while any is allocated."""
    auth.require_admin(request, p, "deleting floating IPs")
    F.delete_pool(auth.get_ctx(request), body.ip_range)
    return {"floating_ips_bulk_delete": body.ip_range}
