"""Wiring: the global options, turned into configuration, an engine and a service Ctx.

Nothing is read or opened until a command asks for it, so `--help` and usage errors
never touch a config file or the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer
from sqlalchemy.engine import Engine

from novanet import config as C
from novanet.domain.modes import Mode
from novanet.service.context import Ctx


@dataclass
class State:
    """The global options of one `novanet` run and what is built from them."""

    config_files: list[str] = field(default_factory=list)
    db: str | None = None
    network_manager: str | None = None
    _config: C.Config | None = None
    _engine: Engine | None = None

    def config(self) -> C.Config:
        if self._config is None:
            overrides = {"connection": self.db, "network_manager": self.network_manager}
            self._config = C.load(self.config_files, overrides)
        return self._config

    def engine(self) -> Engine:
        from novanet.db.engine import create_engine

        if self._engine is None:
            self._engine = create_engine(self.config().database_url)
        return self._engine

    def ctx(self) -> Ctx:
        """A service context on a database whose schema is current (SQLite: made so)."""
        from novanet.db.migrate import ensure_schema

        engine = self.engine()
        ensure_schema(engine)
        return Ctx(engine, self.config())

    @property
    def mode(self) -> Mode:
        return self.config().network_manager

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def state(ctx: typer.Context) -> State:
    """The State of this run, set by `main` as the root context's obj."""
    obj: Any = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def service(ctx: typer.Context) -> Ctx:
    return state(ctx).ctx()
