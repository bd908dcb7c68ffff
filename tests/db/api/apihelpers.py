"""Setup shared by the API tests (not a conftest: imported by name)."""

from __future__ import annotations

import uuid
from typing import Any

from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

FIXED = "10.20.0.0/24"
POOL = "203.0.113.0/29"  # 203.0.113.1-6


def setup_network(ctx: Ctx, cidr: str = FIXED, **kw: Any) -> N.Network:
    req = N.NetworkRequest(label="private", fixed_range_v4=cidr, bridge="br100", **kw)
    return N.create_networks(ctx, ctx.config.network_manager, req)[0]


def setup_pool(ctx: Ctx, ip_range: str = POOL) -> None:
    F.create_pool(ctx, ip_range)


def boot(ctx: Ctx, project: str = "p1", host: str = "compute-1") -> tuple[str, list[dict[str, Any]]]:
    uid = str(uuid.uuid4())
    info = I.allocate_for_instance(ctx, ctx.config.network_manager, I.AllocateRequest(uid, project, host))
    return uid, info


def fixed_of(info: list[dict[str, Any]]) -> str:
    address: str = info[0]["network"]["subnets"][0]["ips"][0]["address"]
    return address
