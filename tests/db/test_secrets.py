"""Secrets at rest: the SQLite database and its -wal/-shm are 0600; a database URL that
cannot be parsed is reported without its password."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.domain.errors import ConfigError


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "state" / "novanet.sqlite"
    old = os.umask(0o022)
    try:
        engine = create_engine(f"sqlite:///{db}")
        ensure_schema(engine)
        with engine.begin() as conn:  # a write: the -wal and -shm exist now
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        engine.dispose()
    finally:
        os.umask(old)


def test_a_loose_database_file_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "novanet.sqlite"
    db.touch(mode=0o644)
    db.chmod(0o644)
    create_engine(f"sqlite:///{db}").dispose()
    assert _mode(db) == 0o600


def test_an_unparsable_url_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        create_engine("postgresql+psycopg://novanet:s3cret@db.example:notaport/novanet")
    assert "s3cret" not in str(err.value) and "novanet:***@" in str(err.value)
