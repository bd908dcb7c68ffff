"""`novanet api` and `novanet serve`: the REST API, alone or with this host's agent.

FastAPI and uvicorn are imported only here, inside the commands, so `novanet --help`
and every other command start without them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from novanet.cli.options import option
from novanet.cli.state import state

PortOpt = Annotated[
    int | None,
    option("--port", metavar="PORT", min=1, max=65535, help="TCP port [[api] listen_port, 8774]."),
]
JsonLogOpt = Annotated[bool, option("--log-json", help="Log one JSON object per line.")]


def _settings(ctx: typer.Context) -> tuple[str, object]:
    from novanet.api.server import settings

    st = state(ctx)
    cfg = st.ctx().config  # reads the configuration and migrates SQLite before serving
    return settings(st.config_files, st.db, st.network_manager), cfg


def api(
    ctx: typer.Context,
    host: Annotated[
        str | None, option("--host", metavar="ADDR", help="Address to listen on [[api] listen, 127.0.0.1].")
    ] = None,
    port: PortOpt = None,
    workers: Annotated[
        int | None,
        option("--workers", metavar="N", min=1, max=64, help="Worker processes [[api] workers, 1]."),
    ] = None,
    log_json: JsonLogOpt = False,
) -> None:
    """Serve the REST API: the Compute API's network endpoints under /v2/{project_id} and
    /v2.1/{project_id}, the native API under /v1, OpenAPI at /openapi.json, metrics at
    /metrics. Stops cleanly on SIGTERM (requests in flight finish)."""
    from novanet.api.server import serve_api

    raw, cfg = _settings(ctx)
    serve_api(
        raw,
        host or cfg.api_listen,  # type: ignore[attr-defined]
        port or cfg.api_listen_port,  # type: ignore[attr-defined]
        workers or cfg.api_workers,  # type: ignore[attr-defined]
        log_json,
    )


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        option("--host", metavar="NAME", help="This host's name [the host option, or the hostname]."),
    ] = None,
    listen: Annotated[
        str | None, option("--listen", metavar="ADDR", help="API address [[api] listen, 127.0.0.1].")
    ] = None,
    port: PortOpt = None,
    log_json: JsonLogOpt = False,
) -> None:
    """All in one for one machine: the REST API and this host's agent in one process
    (configured by nova.conf; SQLite by default, PostgreSQL when [database] connection
    says so). Needs root for the agent. SIGTERM stops the API, then the agent."""
    from novanet.api.server import serve_all_in_one

    raw, cfg = _settings(ctx)
    st = state(ctx)
    name = host or cfg.host  # type: ignore[attr-defined]
    serve_all_in_one(
        raw,
        name,
        listen or cfg.api_listen,  # type: ignore[attr-defined]
        port or cfg.api_listen_port,  # type: ignore[attr-defined]
        log_json,
        st.config_files,
    )
