"""An OpenStack config drive: ISO 9660 (Rock Ridge + Joliet) labelled ``config-2`` with
openstack/latest/{meta_data,network_data}.json, built with genisoimage (or xorriso's
mkisofs emulation). cloud-init and Glean read it and configure any modern guest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from novanet.domain.errors import InvalidInput
from novanet.inject.ext4 import InjectError

LABEL = "config-2"


def _mkisofs() -> list[str]:
    if exe := shutil.which("genisoimage"):
        return [exe]
    if exe := shutil.which("xorriso"):
        return [exe, "-as", "mkisofs"]
    raise InjectError("neither genisoimage nor xorriso is installed")


def build(out: Path, meta_data: Mapping[str, Any], network_data: Mapping[str, Any]) -> list[str]:
    """Write the config drive to ``out`` (atomically); returns the paths it holds."""
    out = Path(out)
    if out.exists() and not out.is_file():
        raise InvalidInput(f"{out} exists and is not a regular file")
    if not out.parent.is_dir():
        raise InvalidInput(f"directory {out.parent} does not exist")
    files = {
        "openstack/latest/meta_data.json": json.dumps(meta_data, indent=2, sort_keys=True) + "\n",
        "openstack/latest/network_data.json": json.dumps(network_data, indent=2, sort_keys=True) + "\n",
    }
    staging = Path(tempfile.mkdtemp(prefix="novanet-configdrive-"))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".iso", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        for rel, text in files.items():
            p = staging / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        cmd = [*_mkisofs(), "-o", str(tmp), "-V", LABEL, "-J", "-R", "-input-charset", "utf-8", "-quiet"]
        res = subprocess.run([*cmd, str(staging)], capture_output=True, text=True, timeout=120, check=False)
        if res.returncode != 0:
            raise InjectError(f"building the ISO failed: {' '.join(res.stderr.split())[:200]}")
        tmp.chmod(0o644)
        os.replace(tmp, out)
        return sorted(files)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        shutil.rmtree(staging, ignore_errors=True)
