"""Suite-wide pytest configuration.

Markers themselves are declared in pyproject.toml; here every test is tagged
with its tier from the directory it lives in, so ``pytest -m unit`` etc. work
without decorating each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# first directory under tests/ -> marker name
TIER_MARKERS = {
    "unit": "unit",
    "db": "db",
    "netns": "netns",
    "e2e": "e2e",
}


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            rel = item.path.resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        if len(rel.parts) < 2:
            continue
        marker = TIER_MARKERS.get(rel.parts[0])
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
