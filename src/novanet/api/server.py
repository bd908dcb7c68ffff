"""Running the API: uvicorn, workers, logs (readable or JSON), and `novanet serve`.

Workers are separate processes; each builds its own engine from the same configuration
(passed in NOVANET_API_SETTINGS), and nothing is kept between requests, so any number of
processes on any number of machines can serve one PostgreSQL database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from novanet import config as C
from novanet.service.context import Ctx

SETTINGS_ENV = "NOVANET_API_SETTINGS"
log = logging.getLogger("novanet.api")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def log_config(as_json: bool, level: str = "INFO") -> dict[str, Any]:
    """A logging dictConfig for novanet's and uvicorn's loggers."""
    fmt: dict[str, Any] = (
        {"()": JsonFormatter}
        if as_json
        else {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": fmt},
        "handlers": {"main": handler},
        "loggers": {
            "novanet": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["main"], "level": level, "propagate": False},
        },
    }


def settings(config_files: Sequence[str], db: str | None, network_manager: str | None) -> str:
    return json.dumps({"config_files": list(config_files), "db": db, "network_manager": network_manager})


def ctx_from(raw: str) -> Ctx:
    from novanet.db.engine import create_engine
    from novanet.db.migrate import ensure_schema

    s = json.loads(raw)
    cfg = C.load(s["config_files"], {"connection": s["db"], "network_manager": s["network_manager"]})
    engine = create_engine(cfg.database_url)
    ensure_schema(engine)
    return Ctx(engine, cfg)


def app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process."""
    from novanet.api.app import create_app

    return create_app(ctx_from(os.environ[SETTINGS_ENV]))


def serve_api(
    raw_settings: str,
    host: str,
    port: int,
    workers: int,
    as_json: bool,
    access_log: bool = True,
    on_started: Any = None,
) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish first (up to 30 s)."""
    import uvicorn

    os.environ[SETTINGS_ENV] = raw_settings
    # uvicorn drains, restores the previous handler, then raises the signal again; with
    # this one in place that ends in a normal return (exit 0), not death by SIGTERM.
    signal.signal(signal.SIGTERM, lambda _s, _f: None)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": log_config(as_json),
        "access_log": access_log,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
        "factory": True,
    }
    if workers > 1:
        uvicorn.run("novanet.api.server:app_from_env", workers=workers, **common)
        return
    config = uvicorn.Config("novanet.api.server:app_from_env", **common)
    server = uvicorn.Server(config)
    if on_started is not None:
        on_started(server)
    server.run()


def serve_all_in_one(
    raw_settings: str,
    host_name: str,
    listen: str,
    port: int,
    as_json: bool,
    config_files: Sequence[str],
) -> int:
    """`novanet serve`: this host's agent in a thread, the API in the main thread (where
    uvicorn handles the signals); the agent stops once the API has drained."""
    from novanet.agent.main import build_agent, run_agent

    ctx = ctx_from(raw_settings)
    agent = build_agent(ctx, host_name, config_files)
    cfg = ctx.config
    underlay = cfg.effective_vxlan_local_ip if cfg.vlan_segmentation == "vxlan" else None
    stop = threading.Event()
    thread = threading.Thread(
        target=run_agent,
        args=(agent,),
        kwargs={"underlay": underlay, "stop": stop, "role": "serve"},
        name="novanet-agent",
        daemon=True,
    )
    thread.start()
    try:
        serve_api(raw_settings, listen, port, 1, as_json)
    finally:
        stop.set()
        thread.join(timeout=30)
        ctx.engine.dispose()
    return 0
