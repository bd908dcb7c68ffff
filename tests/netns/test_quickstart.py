"""The README's first command: scripts/quickstart.sh builds the FlatDHCP sandbox, prints
the next commands, and says so when run again while it is up."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hostlab import NOVANET
from nslab import sh

pytestmark = [pytest.mark.netns, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_builds_the_sandbox_and_is_idempotent() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the quickstart test needs root (CI runs as root)")
        pytest.skip("the quickstart needs root")
    state = Path(tempfile.mkdtemp(prefix="novanet-qs-"))
    state.chmod(0o755)
    name = "q" + secrets.token_hex(4)
    env = {**os.environ, "NOVANET_STATE_PATH": str(state), "QUICKSTART_NAME": name}
    conf = state / "quickstart.conf"
    try:
        first = subprocess.run(
            ["bash", str(ROOT / "scripts/quickstart.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert first.returncode == 0, first.stderr[-2000:]
        assert f"sandbox {name} is up" in first.stdout and "quickstart: ok" in first.stdout
        assert "flatdhcp" in first.stdout and "sandbox exec --name" in first.stdout
        # The instances really hold their leases.
        status = sh([NOVANET, "--config-file", str(conf), "sandbox", "status", "--name", name])
        assert status.count(" True ") == 2, status
        again = subprocess.run(
            ["bash", str(ROOT / "scripts/quickstart.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert again.returncode == 0 and f"the sandbox {name} is already up" in again.stdout, again.stdout
        assert sorted(
            n for n in sh(["ip", "netns", "list"]).split() if n.startswith(f"nvsb-{name}-")
        ) == sorted(f"nvsb-{name}-{r}" for r in ("out", "und", "net", "c1", "c2", "vm1", "vm2"))
    finally:
        subprocess.run(
            [NOVANET, "--config-file", str(conf), "sandbox", "down", "--name", name],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(state, ignore_errors=True)
    assert not [n for n in sh(["ip", "netns", "list"]).split() if n.startswith(f"nvsb-{name}-")]
