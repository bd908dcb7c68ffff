"""API test support (imported by name; a module named conftest would clash with the
other tiers' conftest files): an application on a migrated database of either backend, tokens, and
a validator for the Compute API's response schemas (tempest's, and the authored ones in
compute_schemas/, copied from shared/reference/compute-api; see its SOURCES.md)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from fastapi.testclient import TestClient
from lifecycle_support import BASE_OPTIONS

from novanet import config as C
from novanet.api.app import create_app
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.service import tokens
from novanet.service.context import Ctx

SCHEMAS = Path(__file__).resolve().parent / "compute_schemas"


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return data


def check(resp: Any, name: str) -> Any:
    """Assert the response matches a Compute-API schema: status and body (Draft 4 with
    format checks, as tempest validated)."""
    s = schema(name)
    assert resp.status_code in s["status_code"], (resp.status_code, resp.text)
    if "response_body" in s:
        body = resp.json()
        jsonschema.Draft4Validator(
            s["response_body"], format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
        ).validate(body)
        return body
    assert resp.content == b"", resp.content
    return None


def fault(resp: Any, status: int) -> dict[str, Any]:
    """Assert an error answer: status and a Compute-API fault body with the right name."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    s = schema("error_fault")
    body: dict[str, Any] = resp.json()
    jsonschema.Draft4Validator(s["response_body"]).validate(body)
    name = s["fault_names"].get(str(status), "computeFault")
    assert list(body) == [name], body
    assert body[name]["code"] == status
    return body[name]


@dataclass
class Api:
    client: TestClient
    ctx: Ctx
    admin: str  # project "admin", role admin
    member: str  # project p1
    other: str  # project p2
    service: str  # project svc, role service

    def h(self, token: str | None) -> dict[str, str]:
        return {"X-Auth-Token": token} if token else {}

    def req(self, method: str, path: str, token: str | None, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.h(token), **kw)


def make_ctx(url: str, manager: str = "flatdhcp", **options: Any) -> Ctx:
    engine = create_engine(url)
    sync(engine)
    cfg = C.load(overrides={**BASE_OPTIONS, "network_manager": manager, "connection": url, **options})
    return Ctx(engine, cfg)


@contextlib.contextmanager
def open_api(db_url: str, **options: Any) -> Iterator[Api]:
    ctx = make_ctx(db_url, **options)
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield Api(
                client,
                ctx,
                admin=tokens.create(ctx, "admin", role="admin")["token"],
                member=tokens.create(ctx, "p1", user="alice")["token"],
                other=tokens.create(ctx, "p2", user="bob")["token"],
                service=tokens.create(ctx, "svc", role="service")["token"],
            )
    finally:
        ctx.engine.dispose()
