"""Shared setup of the lifecycle tests: one migrated database per test, contexts over it.

Not a conftest: the lifecycle test modules import it explicitly, so nothing here
changes the fixtures of other tests in tests/db.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.db.schema import dhcp_releases, fixed_ips, metadata
from novanet.domain.errors import NovanetError
from novanet.service import fixed as X
from novanet.service.context import Ctx

# Fixed, documentation-range values so that results do not depend on the machine.
BASE_OPTIONS: dict[str, Any] = {
    "host": "net-host",
    "my_ip": "192.0.2.10",
    "flat_network_bridge": "br100",
    "flat_network_dns": "192.0.2.53",
}


class Env:
    """A freshly migrated database and a way to build contexts with given options."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        sync(self.engine)

    def ctx(self, manager: str, **options: Any) -> Ctx:
        cfg = C.load(
            overrides={**BASE_OPTIONS, "network_manager": manager, "connection": self.url, **options}
        )
        return Ctx(self.engine, cfg)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every novanet table, ordered by primary key."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for table in metadata.sorted_tables:
                order = list(table.primary_key.columns)
                out[table.name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*order))]
        return out

    def dhcp_releases(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dhcp_releases).order_by(dhcp_releases.c.id))
            return [dict(r._mapping) for r in rows]

    def host_addresses(self) -> dict[str, str]:
        """Multi-host gateway/DHCP addresses: address -> host (fixed_ips.host)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(fixed_ips.c.address, fixed_ips.c.host).where(fixed_ips.c.host.is_not(None))
            )
            return {r.address: r.host for r in rows}

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def open_env(url: str) -> Iterator[Env]:
    env = Env(url)
    try:
        yield env
    finally:
        env.close()


def refused(
    env: Env,
    exc_type: type[NovanetError],
    fn: Callable[..., Any],
    *args: Any,
    match: str | None = None,
    **kwargs: Any,
) -> NovanetError:
    """Assert that ``fn`` raises ``exc_type`` and leaves every table exactly as it was."""
    before = env.dump()
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    assert env.dump() == before, "a refused command changed the database"
    return info.value


def new_uuid() -> str:
    return str(uuid.uuid4())


def fixed_rows(ctx: Ctx, cidr: str) -> dict[str, dict[str, Any]]:
    """`fixed list` rows of one network, by address."""
    return {r["address"]: r for r in X.list_fixed(ctx) if r["network"] == cidr}


def reserved_addresses(ctx: Ctx, cidr: str) -> set[str]:
    return {a for a, r in fixed_rows(ctx, cidr).items() if r["reserved"]}


def first_ip(info: list[dict[str, Any]], vif: int = 0) -> str:
    return str(info[vif]["network"]["subnets"][0]["ips"][0]["address"])


def subnet(info: list[dict[str, Any]], vif: int = 0) -> dict[str, Any]:
    return dict(info[vif]["network"]["subnets"][0])
