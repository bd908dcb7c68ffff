"""Fixtures for the CLI tests: run `novanet` in-process (fast) or as a real subprocess.

Every test gets its own SQLite database in tmp_path (copied from a migrated template,
so the schema migration runs once per session) and its own nova.conf.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from novanet.cli.main import main

NOVANET = str(Path(sys.executable).with_name("novanet"))
BASE_CONFIG = "[DEFAULT]\nflat_network_bridge=br100\nhost=nethost\n"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


class Cli:
    """`novanet` bound to one database, one config file and one network manager."""

    def __init__(self, capsys: pytest.CaptureFixture[str], db: Path, conf: Path, manager: str | None) -> None:
        self.capsys = capsys
        self.db = db
        self.conf = conf
        self.manager = manager

    @property
    def globals(self) -> list[str]:
        g = ["--config-file", str(self.conf), "--db", f"sqlite:///{self.db}"]
        if self.manager:
            g += ["--network-manager", self.manager]
        return g

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main([*self.globals, *args])
        cap = self.capsys.readouterr()
        return Result(code, cap.out, cap.err)

    def ok(self, *args: str) -> Result:
        res = self(*args)
        assert res.code == 0, f"novanet {' '.join(args)} -> {res.code}: {res.err}"
        assert res.err == ""
        return res

    def json(self, *args: str) -> Any:
        return self.ok(*args, "--json").json()

    @property
    def command(self) -> list[str]:
        """The installed entry point with this test's global options."""
        return [NOVANET, *self.globals]

    def subprocess(self, *args: str, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def snapshot(self) -> tuple[Any, Any, Any]:
        """Everything the listings show: a refused command must leave it as it was."""
        return (
            self.json("network", "list"),
            self.json("fixed", "list"),
            self.json("floating", "list"),
        )

    def refused(self, *args: str, code: int | None = None, match: str = "") -> Result:
        """Run a command that must fail: one line on stderr, non-zero, nothing changed."""
        before = self.snapshot()
        res = self(*args)
        assert res.code != 0, f"novanet {' '.join(args)} succeeded: {res.out}"
        if code is not None:
            assert res.code == code, f"exit {res.code}, wanted {code}: {res.err}"
        assert len(res.err_lines) == 1, res.err
        assert res.err.startswith("novanet: error: "), res.err
        assert match.lower() in res.err.lower(), res.err
        assert "Traceback" not in res.err
        assert res.out == ""
        assert self.snapshot() == before
        return res


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database to copy (migrating once per session)."""
    path = tmp_path_factory.mktemp("template") / "n.sqlite"
    assert main(["--db", f"sqlite:///{path}", "db", "sync"]) == 0
    return path


MakeCli = Callable[..., Cli]


@pytest.fixture
def make_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], template_db: Path) -> MakeCli:
    def make(manager: str | None = "flatdhcp", config: str = "", fresh: bool = False) -> Cli:
        db = tmp_path / "n.sqlite"
        if not fresh and not db.exists():
            shutil.copyfile(template_db, db)
        conf = tmp_path / "nova.conf"
        conf.write_text(BASE_CONFIG + config)
        return Cli(capsys, db, conf, manager)

    return make


@pytest.fixture
def cli(make_cli: MakeCli) -> Cli:
    """FlatDHCP, flat_network_bridge=br100."""
    return make_cli("flatdhcp")


@pytest.fixture
def vlan_cli(make_cli: MakeCli) -> Cli:
    return make_cli("vlan")
