"""API fixtures (helpers live in apisupport.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apisupport import Api, open_api


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with open_api(db_url) as a:
        yield a
