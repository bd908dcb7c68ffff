"""The FastAPI application: both APIs, the error table, metrics, the body limit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from novanet import __version__
from novanet.api import errors
from novanet.api.compute.router import router as compute_routes
from novanet.api.middleware import BodyLimit, Metrics
from novanet.api.native.instances import coalescers
from novanet.api.native.router import router as native_routes
from novanet.service.context import Ctx
from novanet.service.tokens import TokenCache

COMPUTE_PREFIXES = ("/v2.1/{project_id}", "/v2/{project_id}")


def _operation_id(route: APIRoute) -> str:
    # The same handlers serve /v2 and /v2.1; their ids must still be unique.
    method = sorted(route.methods)[0].lower() if route.methods else "any"
    path = route.path_format.replace("{", "").replace("}", "").strip("/").replace("/", "_")
    return f"{method}_{path}".replace(".", "_").replace("-", "_")


FAULT_SCHEMA = {
    "type": "object",
    "description": "A Compute-API fault: one key (badRequest, itemNotFound ...) -> code and message",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    },
}
FAULT_CODES = ("400", "401", "403", "404", "409", "413", "422", "501", "503")


def _with_faults(schema: dict[str, Any]) -> dict[str, Any]:
    """Document what the API answers: every refusal is a Fault (never FastAPI's 422 body),
    and a 202 has no body."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    comps.pop("HTTPValidationError", None)
    comps.pop("ValidationError", None)
    comps["Fault"] = FAULT_SCHEMA
    fault = {"application/json": {"schema": {"$ref": "#/components/schemas/Fault"}}}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if "202" in responses:
                responses["202"] = {"description": "Accepted (no body)"}
            for code in FAULT_CODES:
                responses[code] = {"description": "Fault", "content": fault}
    return schema


def create_app(ctx: Ctx) -> FastAPI:
    """An API application serving ``ctx``'s database. It keeps no state between requests
    (the group-commit queues hold only requests in flight)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.coalescers.close()  # in-flight requests finish first

    app = FastAPI(
        lifespan=lifespan,
        title="novanet",
        version=__version__,
        description=(
            "The network service's REST API: the Compute API's network endpoints under"
            " /v2/{project_id} and /v2.1/{project_id} (Havana bodies and faults), and the"
            " native API under /v1. Authenticate with X-Auth-Token (see `novanet token create`)."
        ),
        generate_unique_id_function=_operation_id,
    )
    app.state.ctx = ctx
    app.state.coalescers = coalescers(ctx)
    app.state.token_cache = TokenCache(ctx.config.api_token_cache_seconds)
    errors.install(app)
    # The native API first: FastAPI tries the routes in order, and the busiest ones
    # (compute hosts' allocate/deallocate) are native; the prefixes do not overlap.
    app.include_router(native_routes, prefix="/v1")
    # /v2.1 is documented in /openapi.json; /v2 serves the same handlers.
    app.include_router(compute_routes, prefix=COMPUTE_PREFIXES[0])
    app.include_router(compute_routes, prefix=COMPUTE_PREFIXES[1], include_in_schema=False)

    registry = CollectorRegistry()

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def versions() -> dict[str, object]:
        return {
            "versions": [
                {"id": "v2.0", "status": "SUPPORTED"},
                {"id": "v2.1", "status": "CURRENT"},
                {"id": "v1", "status": "CURRENT", "native": True},
            ]
        }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_faults(
                get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(Metrics, registry=registry)
    app.add_middleware(BodyLimit, limit=ctx.config.api_max_request_body_size)
    return app
