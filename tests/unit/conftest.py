"""Shared by the unit tests of the lease path: a FlatDHCP network on a fresh SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.domain.modes import FLATDHCP
from novanet.service import networks as N
from novanet.service.context import Ctx


@dataclass
class FlatDb:
    ctx: Ctx
    url: str
    net: str  # the network's uuid: 10.0.0.0/24 on br100, host h1


@pytest.fixture
def flat_db(tmp_path: Path) -> Iterator[FlatDb]:
    url = f"sqlite:///{tmp_path}/novanet.sqlite"
    engine = create_engine(url)
    ensure_schema(engine)
    ctx = Ctx(engine, C.load(overrides={"flat_network_bridge": "br100", "connection": url, "host": "h1"}))
    (net,) = N.create_networks(ctx, FLATDHCP, N.NetworkRequest(label="private", fixed_range_v4="10.0.0.0/24"))
    try:
        yield FlatDb(ctx, url, net.uuid)
    finally:
        engine.dispose()
