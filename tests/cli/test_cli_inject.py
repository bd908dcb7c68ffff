"""`network create --injected`, `novanet inject` and `novanet sandbox` at the command
line: defaults, refusals (one line, exit code, nothing changed), --root writes."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

INVALID, NOT_FOUND, CONFLICT = 2, 3, 4


def create(cli, label: str, cidr: str, *extra: str) -> dict:
    [net] = cli.json("network", "create", "--label", label, "--fixed-range-v4", cidr, *extra)
    return net


def test_injected_defaults_and_flags(make_cli) -> None:
    flat = make_cli("flat")
    assert create(flat, "a", "10.1.0.0/24")["injected"] is False  # flat_injected = False
    assert create(flat, "b", "10.2.0.0/24", "--bridge", "br2", "--injected")["injected"] is True
    dhcp = make_cli("flatdhcp")
    assert create(dhcp, "c", "10.3.0.0/24", "--bridge", "br3")["injected"] is False
    assert create(dhcp, "d", "10.4.0.0/24", "--bridge", "br4", "--injected")["injected"] is True
    vlan = make_cli("vlan")
    assert create(vlan, "e", "10.5.0.0/24", "--injected")["injected"] is True


def test_flat_injected_option(make_cli) -> None:
    flat = make_cli("flat", config="flat_injected = True\n")
    assert create(flat, "a", "10.1.0.0/24")["injected"] is True
    assert create(flat, "b", "10.2.0.0/24", "--bridge", "br2", "--no-injected")["injected"] is False
    # Only Flat mode injects by default, as the original.
    dhcp = make_cli("flatdhcp", config="flat_injected = True\n")
    assert create(dhcp, "c", "10.3.0.0/24", "--bridge", "br3")["injected"] is False


@pytest.fixture
def injected(make_cli):
    cli = make_cli("flat", config="flat_injected = True\n")
    create(cli, "a", "10.1.0.0/24")
    uuid = str(uuidlib.uuid4())
    cli.ok("instance", "allocate", uuid, "--project-id", "p", "--host", "h1", "--hostname", "vm1")
    return cli, uuid


def test_inject_root(injected, tmp_path: Path) -> None:
    cli, uuid = injected
    root = tmp_path / "guest"
    root.mkdir()
    out = cli.json("inject", uuid, "--root", str(root))
    text = (root / "etc/network/interfaces").read_text()
    assert out["interfaces"] == text and "iface eth0 inet static\n    address 10.1.0.2\n" in text
    assert out["files"] == [{"path": "/etc/network/interfaces", "size": len(text), "mode": "0644",
                             "uid": out["files"][0]["uid"], "gid": out["files"][0]["gid"]}]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["--root", "/nonexistent-novanet"], INVALID, "not a directory"),
        (["--image", "/nonexistent-novanet.img"], INVALID, "not a regular file"),
        (["--root", "/tmp", "--image", "/tmp/x"], INVALID, "exactly one of"),
        ([], INVALID, "exactly one of"),
        (["--root", "/tmp", "--partition", "1"], INVALID, "--partition goes with --image"),
        (["--image", "/etc/hostname", "--partition", "0"], INVALID, "start at 1"),
        (["--config-drive", "/nonexistent-novanet/x.iso"], INVALID, "does not exist"),
    ],
)
def test_inject_refused(injected, args, code, match) -> None:
    cli, uuid = injected
    cli.refused("inject", uuid, *args, code=code, match=match)


def test_inject_unknown_instance(injected, tmp_path: Path) -> None:
    cli, _ = injected
    cli.refused("inject", str(uuidlib.uuid4()), "--root", str(tmp_path), code=NOT_FOUND, match="not found")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["up", "--name", "Bad-Name"], "sandbox name"),
        (["up", "--name", "x", "--manager", "nova"], "unknown network manager"),
        (["up", "--name", "x", "--guest", "xen"], "--guest"),
        (["status", "--name", "nosuch"], "no sandbox nosuch"),
        (["down", "--name", "nosuch"], "no sandbox nosuch"),
        (["exec", "--name", "nosuch", "vm1", "--", "true"], "no sandbox nosuch"),
    ],
)
def test_sandbox_refused(make_cli, tmp_path: Path, args, match) -> None:
    cli = make_cli("flatdhcp", config=f"state_path = {tmp_path}/state\n")
    res = cli.subprocess("sandbox", *args)
    assert res.code != 0 and len(res.err_lines) == 1 and match in res.err, res.err
    assert res.out == ""
    assert not (tmp_path / "state" / "sandbox").exists() or not any(
        (tmp_path / "state" / "sandbox").iterdir()
    )
