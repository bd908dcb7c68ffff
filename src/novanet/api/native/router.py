"""Every native router, mounted by app.py under /v1."""

from __future__ import annotations

from fastapi import APIRouter

from novanet.api.native import hosts, instances

router = APIRouter()
for _module in (instances, hosts):
    router.include_router(_module.router)
