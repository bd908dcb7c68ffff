"""The command line itself: help, usage errors, aliases, exit codes, real subprocesses."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from novanet.cli.main import main
from novanet.service import networks as N

USAGE = 2


def test_top_level_help(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "nova-network's control plane" in " ".join(out.split())
    for group in ("db", "network", "fixed", "floating", "instance", "vpn"):
        assert f"  {group} " in out


@pytest.mark.parametrize(
    "argv",
    [
        ["network", "--help"],
        ["network", "create", "--help"],
        ["floating", "associate", "--help"],
        ["instance", "allocate", "-h"],
        ["--db", "sqlite:////nonexistent/dir/x.sqlite", "network", "list", "--help"],
    ],
)
def test_sub_help_exits_zero_and_touches_nothing(capsys, argv) -> None:
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("Usage: novanet ")
    assert cap.err == ""


def test_help_hides_underscore_aliases(capsys) -> None:
    assert main(["network", "create", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--fixed-range-v4" in out and "--multi-host T|F" in out
    assert "--fixed_range_v4" not in out and "--multi_host" not in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["network", "list", "--bogus"], "no such option: --bogus"),
        (["network", "create", "--label", "x"], "missing option '--fixed-range-v4'"),
        (["floating", "allocate"], "missing option '--project-id'"),
        (["instance", "allocate", str(uuidlib.uuid4()), "--project-id", "p1"], "missing option '--host'"),
        (["network", "create", "--label", "x", "--fixed-range-v4", "10.0.0.0/24", "--num-networks", "two"],
         "'--num-networks'"),
        (["network", "create", "--label", "x", "--fixed-range-v4", "10.0.0.0/24", "--multi-host", "maybe"],
         "'maybe' is not T or F"),
        (["instance", "allocate", str(uuidlib.uuid4()), "--project-id", "p", "--host", "h",
          "--network", "=10.0.0.5"], "expected NET_UUID or NET_UUID=ADDRESS"),
        (["network", "frobnicate"], "no such command"),
        (["network"], "missing command: one of create, list, delete, modify"),
        ([], "missing command"),
        (["fixed", "reserve", "--address"], "requires an argument"),
        (["vpn", "change", "--project", "p", "--ip", "1.2.3.4", "--port", "x"], "'--port'"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(cli, args, match) -> None:
    res = cli(*args)
    assert res.code == USAGE, res
    assert len(res.err_lines) == 1, res.err
    assert res.err.startswith("novanet: error: ")
    assert match.lower() in res.err.lower(), res.err
    assert res.out == ""


def test_usage_error_suggests_documented_spelling(cli) -> None:
    res = cli("network", "create", "--label", "x", "--fixed_rnage_v4", "10.0.0.0/24")
    assert res.code == USAGE
    assert "--fixed-range-v4" in res.err and "--fixed_range_v4" not in res.err


def test_underscore_aliases(cli) -> None:
    created = cli.json(
        "network", "create", "--label", "a", "--fixed_range_v4", "10.0.0.0/16", "--num_networks", "2",
        "--network_size", "256", "--bridge_interface", "eth1", "--multi_host", "F",
        "--fixed_cidr", "10.0.0.0/17", "--project_id", "p1",
    )  # fmt: skip
    assert [n["cidr"] for n in created] == ["10.0.0.0/24", "10.0.1.0/24"]
    assert all(n["bridge_interface"] == "eth1" and n["project_id"] == "p1" for n in created)
    cli.ok("network", "modify", "10.0.1.0/24", "--disassociate_project", "--host", "h9")
    cli.ok("network", "modify", "10.0.1.0/24", "--disassociate_host")
    cli.ok("network", "delete", "--fixed_range", "10.0.1.0/24")
    assert [n["cidr"] for n in cli.json("network", "list")] == ["10.0.0.0/24"]

    cli.ok("floating", "create", "--ip_range", "203.0.113.0/28")
    got = cli.json("floating", "allocate", "--project_id", "p1")
    inst = str(uuidlib.uuid4())
    cli.ok("instance", "allocate", inst, "--project_id", "p1", "--host", "h1")
    cli.ok("floating", "associate", got["address"], "--instance", inst, "--fixed_address", "10.0.0.2")
    assert cli.json("floating", "list", "--project_id", "p1")[0]["fixed_address"] == "10.0.0.2"
    cli.ok("floating", "disassociate", got["address"])
    cli.ok("floating", "release", got["address"], "--project_id", "p1")
    cli.ok("floating", "delete", "--ip_range", "203.0.113.0/28")


def test_global_option_aliases(make_cli, capsys) -> None:
    cli = make_cli(manager=None)
    args = ["--config_file", str(cli.conf), "--db", f"sqlite:///{cli.db}", "--network_manager", "flat"]
    assert (
        main([*args, "network", "create", "--label", "f", "--fixed-range-v4", "10.0.0.0/24", "--json"]) == 0
    )
    assert capsys.readouterr().out.count('"manager": "flat"') == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("T", True), ("t", True), ("true", True), ("YES", True), ("F", False), ("false", False), ("No", False)],
)
def test_multi_host_values(cli, value, expected) -> None:
    [net] = cli.json(
        "network", "create", "--label", "m", "--fixed-range-v4", "10.0.0.0/24", "--multi-host", value
    )
    assert net["multi_host"] is expected


def test_network_manager_from_config_and_flag(make_cli) -> None:
    cli = make_cli(manager=None, config="network_manager=nova.network.manager.FlatDHCPManager\n")
    assert cli.json("network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24")[0]["manager"] == (
        "flatdhcp"
    )
    cli.manager = "vlan"
    assert cli.json("network", "create", "--label", "b", "--fixed-range-v4", "10.1.0.0/24")[0]["vlan"] == 100


def test_database_from_config_file(make_cli, tmp_path, capsys) -> None:
    cli = make_cli()
    db = tmp_path / "from-conf.sqlite"
    cli.conf.write_text(f"[DEFAULT]\nflat_network_bridge=br100\n[database]\nconnection=sqlite:///{db}\n")
    args = ["--config-file", str(cli.conf), "--network-manager", "flatdhcp"]
    assert main([*args, "network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24"]) == 0
    assert db.exists()


def test_config_errors_are_one_line(make_cli) -> None:
    cli = make_cli()
    res = cli("--config-file", "/nonexistent/nova.conf", "network", "list")
    assert (res.code, res.err_lines) == (
        6,
        ["novanet: error: config file /nonexistent/nova.conf does not exist or is not a file"],
    )
    cli.manager = "bogus"
    res = cli("network", "list")
    assert res.code == 6 and len(res.err_lines) == 1 and "unknown network manager 'bogus'" in res.err
    cli.manager = "flatdhcp"
    cli.conf.write_text("[DEFAULT]\nquota_floating_ips=many\n")
    res = cli("floating", "list")
    assert res.code == 6 and res.err_lines == [
        "novanet: error: option quota_floating_ips: 'many' is not an integer"
    ]


def test_flat_network_needs_a_bridge(make_cli) -> None:
    cli = make_cli()
    cli.conf.write_text("[DEFAULT]\n")
    cli.refused(
        "network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24", code=2, match="need a bridge"
    )


def test_unexpected_error_is_one_line_exit_70(cli, monkeypatch) -> None:
    def boom(ctx):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(N, "list_networks", boom)
    res = cli("network", "list")
    assert (res.code, res.err_lines) == (70, ["novanet: internal error: RuntimeError: disk on fire"])
    monkeypatch.setenv("NOVANET_DEBUG", "1")
    res = cli("network", "list")
    assert res.code == 70
    assert res.err.startswith("Traceback")
    assert res.err_lines[-1] == "novanet: internal error: RuntimeError: disk on fire"


# Real processes: the installed entry point, exit codes and streams as a script sees them.


def test_subprocess_round_trip(cli) -> None:
    res = cli.subprocess("network", "create", "--label", "sp", "--fixed-range-v4", "10.0.0.0/24", "--json")
    assert res.code == 0, res.err
    created = res.json()
    listed = cli.subprocess("network", "list", "--json")
    assert listed.code == 0 and listed.json() == created
    # Not a terminal: no progress bar, no escape codes anywhere.
    assert res.err == "" and "\x1b" not in res.out


def test_subprocess_service_error(cli) -> None:
    cli.ok("network", "create", "--label", "a", "--fixed-range-v4", "10.0.0.0/24")
    res = cli.subprocess("network", "create", "--label", "b", "--fixed-range-v4", "10.0.0.0/24")
    assert res.code == 4
    assert res.err_lines == [
        "novanet: error: range 10.0.0.0/24 overlaps existing network 10.0.0.0/24; pick a free range"
    ]
    assert res.out == ""


def test_subprocess_usage_error_and_help(cli) -> None:
    res = cli.subprocess("floating", "list", "--nope")
    assert res.code == 2
    assert res.err_lines == ["novanet: error: no such option: --nope (see 'novanet floating list --help')"]
    res = cli.subprocess("--help")
    assert res.code == 0 and "Usage: novanet" in res.out and res.err == ""


def test_subprocess_database_error(cli) -> None:
    # The last --db wins.
    res = cli.subprocess("--db", "sqlite:////proc/novanet/n.sqlite", "network", "list")
    assert res.code == 7
    assert res.err_lines == [
        "novanet: error: cannot create database directory /proc/novanet: No such file or directory"
    ]


def test_progress_only_on_a_terminal(cli) -> None:
    import os
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*cli.command, "network", "create", "--label", "t", "--fixed-range-v4", "10.0.0.0/20",
             "--network-size", "4096"],
            stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60, check=False,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        seen = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert proc.stdout.startswith("created network 10.0.0.0/20 ")  # stdout stays clean
    assert b"creating fixed IPs" in seen  # Rich drew (and cleared) a bar on the terminal
    assert b"error" not in seen


def test_subprocess_reader_going_away_is_quiet(cli) -> None:
    import subprocess

    cli.ok("network", "create", "--label", "t", "--fixed-range-v4", "10.0.0.0/20", "--network-size", "4096")
    proc = subprocess.Popen(
        [*cli.command, "fixed", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("network ")
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert err == ""
