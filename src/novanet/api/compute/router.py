"""Every Compute-API router, mounted by app.py under /v2/{project_id} and /v2.1/{project_id}."""

from __future__ import annotations

from fastapi import APIRouter

from novanet.api.compute import cloudpipe, fixed, floating, networks, servers

router = APIRouter()
for _module in (floating, networks, fixed, servers, cloudpipe):
    router.include_router(_module.router)
