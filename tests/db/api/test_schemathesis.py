"""schemathesis against /openapi.json: generated requests for every operation, on SQLite
and PostgreSQL; no 5xx, and every answer within its documented status codes and schema
(a Fault body for every refusal).

Bounded for CI: a few examples per operation (SCHEMATHESIS_EXAMPLES, default 12) and a
deadline per example. Operations run once with a member token and, for the reads, once
with an admin token: the admin's writes (networks of 65536 addresses, ranges of a
million floating IPs) are proven by the API tests instead of being fuzzed at random.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
import schemathesis.specs.openapi.checks as O
from apihelpers import setup_network, setup_pool
from apisupport import make_ctx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novanet.api.app import create_app
from novanet.service import tokens

# What the issue asks: no 5xx (asserted below), nothing outside the documented statuses, content types
# and schemas. (positive_data_acceptance is not among them: the API checks names and
# addresses more strictly than a JSON schema can say, and answers such input 400.)
CHECKS = [
    O.status_code_conformance,
    O.content_type_conformance,
    O.response_schema_conformance,
    O.response_headers_conformance,
]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))


def _runner(op: Any, project: str, token: str) -> Any:
    """A hypothesis test for one operation as one caller."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: Any) -> None:
        case = data.draw(op.as_strategy())
        if case.path_parameters and "project_id" in case.path_parameters:
            case.path_parameters["project_id"] = project
        case.headers = {**(case.headers or {}), "X-Auth-Token": token}
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code < 500, response.text  # no 5xx

    return run


def test_openapi_conformance(db_url: str) -> None:
    ctx = make_ctx(db_url, quota_floating_ips=-1)
    try:
        setup_network(ctx)
        setup_pool(ctx)
        app = create_app(ctx)
        toks = {
            "member": ("p1", tokens.create(ctx, "p1")["token"]),
            "admin": ("admin", tokens.create(ctx, "admin", role="admin")["token"]),
        }
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: list[str] = []
        ran = 0
        for result in schema.get_all_operations():
            op = result.ok()
            roles = ["member", "admin"] if op.method.upper() == "GET" else ["member"]
            for role in roles:
                project, token = toks[role]

                run = _runner(op, project, token)
                try:
                    run()
                    ran += 1
                except Exception as exc:  # collect every operation's failure, then fail once
                    failures.append(f"{op.method.upper()} {op.path} as {role}: {str(exc)[:600]}")
        assert not failures, "\n\n".join(failures)
        assert ran > 30, ran
    finally:
        ctx.engine.dispose()
