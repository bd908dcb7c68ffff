#!/usr/bin/env bash
# The project's test command: set up the machine, make sure PostgreSQL is up,
# then lint, type-check and run pytest with coverage.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m unit`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

pg_url="$(bash scripts/pg-ensure.sh | tail -n1)"
[[ -n "$pg_url" ]] || { echo "test: pg-ensure.sh printed no URL" >&2; exit 1; }
export NOVANET_TEST_PG_URL="$pg_url"

echo "test: ruff"
.venv/bin/ruff check src tests $([[ -d benchmarks ]] && echo benchmarks)
echo "test: mypy"
.venv/bin/mypy
echo "test: pytest"
.venv/bin/pytest --cov=novanet --cov-report=term "$@"
