"""dnsmasq per network: pure argv/files, and the manager against the faithful fake runner."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet.domain.errors import InvalidInput
from novanet.host.dnsmasq.realizer import (
    DnsmasqManager,
    DnsmasqOptions,
    FakeRunner,
    NetworkPaths,
    argv,
    host_line,
    hosts_files,
    lease_script,
    opts_file,
)
from novanet.host.model import DhcpHost, DhcpServer

NET = "5b1c2a34-8d0e-4f5a-9b6c-7d8e9fa0b1c2"
NET2 = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MAC_A = "fa:16:3e:00:00:0a"
MAC_B = "fa:16:3e:00:00:0b"
MAC_C = "fa:16:3e:00:00:0c"
SCRIPT = ["/venv/bin/python", "-m", "novanet.agent.dhcpbridge", "--db", "sqlite:////var/lib/n v/db.sqlite"]


def server(*hosts: DhcpHost, uuid: str = NET, **kw: object) -> DhcpServer:
    base: dict[str, object] = {
        "network_uuid": uuid,
        "label": "private, net",
        "bridge": "br100",
        "listen_address": "10.0.0.1",
        "dhcp_start": "10.0.0.2",
        "netmask": "255.255.255.0",
        "router": "10.0.0.1",
        "dns_servers": ("8.8.4.4",),
        "domain": "novalocal",
        "lease_time": 120,
        "hosts": hosts,
    }
    base.update(kw)
    return DhcpServer(**base)  # type: ignore[arg-type]


A = DhcpHost(MAC_A, "vm-a", "10.0.0.2")
B = DhcpHost(MAC_B, "vm-b", "10.0.0.3")
C = DhcpHost(MAC_C, "vm-c", "10.0.0.4")


@pytest.fixture
def fake() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state root dnsmasq's unprivileged user could traverse (pytest's tmp_path sits
    in a 0700 directory: the very trap check() reports)."""
    d = Path(tempfile.mkdtemp(prefix="novanet-dnsmasq-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mgr(state: Path, fake: FakeRunner) -> DnsmasqManager:
    return DnsmasqManager(state / "networks", "compute-1", SCRIPT, fake)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- pure ------------------------------------------------------------------------


def test_argv_carries_the_original_flags_with_a_hosts_dir_and_dns_off(tmp_path: Path) -> None:
    p = NetworkPaths.of(tmp_path, "compute-1", NET)
    got = argv(server(A), p, DnsmasqOptions(config_file="/etc/novanet/dnsmasq.conf"))
    root = tmp_path / "compute-1" / NET
    assert got == [
        "dnsmasq",
        "--bind-interfaces",
        "--conf-file=/etc/novanet/dnsmasq.conf",
        f"--pid-file={root}/pid",
        "--listen-address=10.0.0.1",
        "--except-interface=lo",
        f"--dhcp-range=set:{NET},10.0.0.2,static,255.255.255.0,120s",
        "--dhcp-lease-max=256",
        f"--dhcp-hostsdir={root}/hosts.d",
        f"--dhcp-optsfile={root}/opts",
        f"--dhcp-script={root}/dhcpbridge",
        "--leasefile-ro",
        "--dhcp-ignore-clid",
        "--domain=novalocal",
        "--no-hosts",
        "--no-resolv",
        "--port=0",
    ]
    assert "--keep-in-foreground" not in got


def test_argv_empty_config_file_and_domain_and_logging(tmp_path: Path) -> None:
    p = NetworkPaths.of(tmp_path, "h", NET)
    got = argv(
        server(netmask="255.255.255.240", dhcp_start="10.0.0.3", domain=""),
        p,
        DnsmasqOptions(log_facility="/var/log/dnsmasq-n.log", log_dhcp=True),
    )
    assert "--conf-file=" in got  # read no /etc/dnsmasq.conf
    assert not any(a.startswith("--domain") for a in got)
    assert "--dhcp-lease-max=16" in got
    assert got[-2:] == ["--log-facility=/var/log/dnsmasq-n.log", "--log-dhcp"]


@pytest.mark.parametrize(
    "change",
    [
        {"bridge": "br;rm -rf /"},
        {"listen_address": "10.0.0.1 --port=53"},
        {"netmask": "24"},
        {"dhcp_start": "10.9.0.2"},
        {"router": "gateway"},
        {"dns_servers": ("8.8.8.8,1.1.1.1",)},
        {"domain": "novalocal\n--port=53"},
        {"lease_time": 0},
        {"mtu": 20},
        {"network_uuid": "../../etc"},
        {"hosts": (DhcpHost("FA:16:3E:00:00:0A", "vm", "10.0.0.2"),)},
        {"hosts": (DhcpHost(MAC_A, "vm,ignore", "10.0.0.2"),)},
        {"hosts": (DhcpHost(MAC_A, "vm", "10.1.0.2"),)},
    ],
)
def test_malformed_values_never_reach_dnsmasq(tmp_path: Path, change: dict[str, object]) -> None:
    s = dataclasses.replace(server(), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        argv(s, NetworkPaths(tmp_path), DnsmasqOptions())
        hosts_files(s)


def test_host_lines_one_file_per_mac() -> None:
    s = server(B, A, DhcpHost(MAC_A, "vm-a", "10.0.0.9"))
    assert hosts_files(s) == {
        "fa-16-3e-00-00-0a": f"{MAC_A},vm-a.novalocal,10.0.0.2,120s\n{MAC_A},vm-a.novalocal,10.0.0.9,120s\n",
        "fa-16-3e-00-00-0b": f"{MAC_B},vm-b.novalocal,10.0.0.3,120s\n",
    }


def test_host_line_without_domain_never_looks_like_a_lease_time_or_keyword() -> None:
    assert host_line(A, "", 120) == f"{MAC_A},vm-a,10.0.0.2,120s"
    for name in ("600", "12h", "ignore", "infinite"):
        assert host_line(DhcpHost(MAC_A, name, "10.0.0.2"), "", 60) == f"{MAC_A},10.0.0.2,60s"
    assert host_line(DhcpHost(MAC_A, "600", "10.0.0.2"), "cloud", 60) == f"{MAC_A},600.cloud,10.0.0.2,60s"


def test_opts_router_dns_mtu_and_no_default_route() -> None:
    t = f"tag:{NET}"
    assert opts_file(server(dns_servers=("8.8.4.4", "192.0.2.53"), mtu=1450)) == (
        f"{t},option:router,10.0.0.1\n{t},option:dns-server,8.8.4.4,192.0.2.53\n{t},option:mtu,1450\n"
    )
    # no router: an empty option 3, else dnsmasq would offer itself as the default route
    assert opts_file(server(router=None, dns_servers=())) == f"{t},option:router\n"


def _recorder(tmp_path: Path) -> tuple[list[str], Path]:
    """A stand-in for the Python command: appends its argv, one per line, then a blank line."""
    out = tmp_path / "calls"
    rec = tmp_path / "rec"
    q = shlex.quote(str(out))
    rec.write_text(f'#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "$a"; done >>{q}\necho >>{q}\n')
    rec.chmod(0o700)
    return [str(rec), "--db", "sqlite:////var/lib/n v/db.sqlite"], out


def _calls(out: Path) -> list[list[str]]:
    if not out.exists():
        return []
    return [c.splitlines() for c in out.read_text().split("\n\n") if c.strip()]


def test_lease_script_spools_add_and_del_and_quotes_every_value(tmp_path: Path) -> None:
    argv, calls = _recorder(tmp_path)
    paths = NetworkPaths(tmp_path / "net dir")
    paths.spool.mkdir(parents=True)
    text = lease_script(argv, server(), "compute-1", paths)
    assert text.startswith("#!/bin/bash\n")
    assert "'sqlite:////var/lib/n v/db.sqlite'" in text
    script = tmp_path / "s"
    script.write_text(text)
    script.chmod(0o700)
    want = [*argv, "--network", NET, "--host", "compute-1", "--lease-time", "120"]
    want += ["--spool", str(paths.spool), "--"]
    # add: the event is in the spool (a guest-chosen hostname is never run, nor kept)
    hostile = "$(touch pwned)"
    r = subprocess.run([str(script), "add", MAC_A, "10.0.0.2", hostile], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(n for n in os.listdir(paths.spool) if not n.startswith("."))
    assert len(files) == 1 and re.fullmatch(r"[0-9]{16}-[0-9]+", files[0])
    assert (paths.spool / files[0]).read_text() == f"add {MAC_A} 10.0.0.2\n"
    assert not (tmp_path / "pwned").exists()
    # ... and one drainer was started with the exact argv (in the background)
    for _ in range(100):
        if _calls(calls):
            break
        time.sleep(0.02)
    assert _calls(calls) == [[*want[1:], "drain"]]
    # del: another event, named after the first (dnsmasq's order is kept)
    subprocess.run([str(script), "del", MAC_A, "10.0.0.2"], check=True)
    names = [n for n in os.listdir(paths.spool) if not n.startswith(".")]
    files2 = sorted(names, key=lambda n: int(n.split("-")[0]))
    assert files2[0] == files[0] and (paths.spool / files2[1]).read_text() == f"del {MAC_A} 10.0.0.2\n"
    for _ in range(100):  # its drainer (the recorder holds no lock, so one is started)
        if len(_calls(calls)) == 2:
            break
        time.sleep(0.02)
    assert _calls(calls) == [[*want[1:], "drain"]] * 2
    # old (renewals, SIGHUP's replay) and other actions: nothing written, nothing run
    calls.unlink()
    for action in ("old", "tftp", "arp-add"):
        subprocess.run([str(script), action, MAC_A, "10.0.0.2"], check=True)
    assert len([n for n in os.listdir(paths.spool) if not n.startswith(".")]) == 2
    # init runs the command in the foreground, dnsmasq's arguments after --
    r = subprocess.run([str(script), "init"], capture_output=True, text=True)
    assert _calls(calls) == [[*want[1:], "init"]]


def test_lease_script_starts_no_drainer_while_one_holds_the_lock(tmp_path: Path) -> None:
    argv, calls = _recorder(tmp_path)
    paths = NetworkPaths(tmp_path / "n")
    paths.spool.mkdir(parents=True)
    script = tmp_path / "s"
    script.write_text(lease_script(argv, server(), "compute-1", paths))
    script.chmod(0o700)
    with open(paths.spool / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        subprocess.run([str(script), "add", MAC_A, "10.0.0.2"], check=True)
        time.sleep(0.3)
        assert _calls(calls) == []  # the holder applies it (leasespool.drain looks again)
    assert len([n for n in os.listdir(paths.spool) if not n.startswith(".")]) == 1


# --- the manager -------------------------------------------------------------------


def test_first_sync_writes_the_state_dir_with_readable_modes_and_starts_once(
    mgr: DnsmasqManager, fake: FakeRunner, state: Path
) -> None:
    rep = mgr.sync([server(A, B)])
    assert rep.ok and rep.started == [NET] and rep.hosts_added == 2
    p = mgr.paths(NET)
    assert p.root == state / "networks" / "compute-1" / NET
    for d in (state / "networks", p.root.parent, p.root, p.hosts_dir):
        assert mode(d) == 0o755
    for f in (p.opts, *p.hosts_dir.iterdir()):
        assert mode(f) == 0o644
    assert mode(p.script) == 0o700  # may carry the database URL; dnsmasq runs it as root
    assert sorted(f.name for f in p.hosts_dir.iterdir()) == ["fa-16-3e-00-00-0a", "fa-16-3e-00-00-0b"]
    (pid, cmd), *more = fake.dump().items()
    assert not more and cmd == argv(server(A, B), p) and mgr.pid_of(NET) == pid
    assert p.pid.read_text().strip() == str(pid)

    again = mgr.sync([server(A, B)])
    assert again.ok and again.started == again.restarted == again.reloaded == []
    assert len(fake.started) == 1 and fake.signals == []
    assert mgr.check([server(A, B)]) == []


def test_modes_hold_under_a_strict_umask(mgr: DnsmasqManager) -> None:
    old = os.umask(0o077)
    try:
        mgr.sync([server(A)])
    finally:
        os.umask(old)
    p = mgr.paths(NET)
    assert mode(p.hosts_dir) == 0o755 and mode(p.hosts_dir / "fa-16-3e-00-00-0a") == 0o644
    assert mode(p.opts) == 0o644


def test_adding_a_host_writes_its_file_without_signal_or_restart(
    mgr: DnsmasqManager, fake: FakeRunner
) -> None:
    mgr.sync([server(A)])
    rep = mgr.sync([server(A, B)])
    assert rep.hosts_added == 1 and rep.reloaded == rep.restarted == []
    assert (
        mgr.paths(NET).hosts_dir / "fa-16-3e-00-00-0b"
    ).read_text() == f"{MAC_B},vm-b.novalocal,10.0.0.3,120s\n"
    assert len(fake.started) == 1 and fake.signals == []
    assert not any(n.startswith(".") for n in (x.name for x in mgr.paths(NET).hosts_dir.iterdir()))


def test_a_batch_of_removals_costs_exactly_one_sighup(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A, B, C)])
    pid = mgr.pid_of(NET)
    rep = mgr.sync([server(A)])
    assert rep.hosts_removed == 2 and rep.reloaded == [NET]
    assert sorted(x.name for x in mgr.paths(NET).hosts_dir.iterdir()) == ["fa-16-3e-00-00-0a"]
    assert fake.signals == [(pid, signal.SIGHUP)] and len(fake.started) == 1
    assert mgr.sync([server(A)]).reloaded == [] and fake.hups() == 1


def test_changed_host_or_options_reload_too(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A)])
    moved = DhcpHost(MAC_A, "vm-a", "10.0.0.7")
    rep = mgr.sync([server(moved)])
    assert rep.hosts_changed == 1 and rep.reloaded == [NET] and fake.hups() == 1
    rep = mgr.sync([server(moved, dns_servers=("192.0.2.53",))])
    assert rep.reloaded == [NET] and fake.hups() == 2 and len(fake.started) == 1


def test_a_sighup_owed_by_a_crashed_agent_is_still_sent(
    state: Path, mgr: DnsmasqManager, fake: FakeRunner
) -> None:
    mgr.sync([server(A, B)])
    # the file went away but the agent died before signalling
    (mgr.paths(NET).hosts_dir / "fa-16-3e-00-00-0b").unlink()
    mgr.paths(NET).reload_mark.touch()
    fresh = DnsmasqManager(state / "networks", "compute-1", SCRIPT, fake)
    assert "SIGHUP pending" in " ".join(fresh.check([server(A)]))
    assert fresh.sync([server(A)]).reloaded == [NET] and fake.hups() == 1


def test_argv_change_restarts_and_nothing_else_does(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A)])
    old = mgr.pid_of(NET)
    rep = mgr.sync([server(A, listen_address="10.0.0.254", router="10.0.0.254")])
    new = mgr.pid_of(NET)
    assert rep.restarted == [NET] and new is not None and new != old
    assert (old, signal.SIGTERM) in fake.signals and fake.hups() == 0
    assert fake.dump()[new] == argv(server(A, listen_address="10.0.0.254"), mgr.paths(NET))
    assert list(fake.dump()) == [new]


def test_networks_no_longer_wanted_are_stopped_and_removed(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A), server(uuid=NET2, listen_address="10.1.0.1", dhcp_start="10.1.0.2", router=None)])
    assert len(fake.dump()) == 2
    keep = mgr.pid_of(NET)
    gone = mgr.pid_of(NET2)
    rep = mgr.sync([server(A)])
    assert rep.stopped == [NET2] and not mgr.paths(NET2).root.exists()
    assert list(fake.dump()) == [keep] and (gone, signal.SIGTERM) in fake.signals
    assert mgr.sync([]).stopped == [NET] and fake.dump() == {}


def test_partial_sync_leaves_other_networks_alone(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    other = server(uuid=NET2, listen_address="10.1.0.1", dhcp_start="10.1.0.2")
    mgr.sync([server(A), other])
    rep = mgr.sync([server(A, B)], prune=False)
    assert rep.stopped == [] and mgr.pid_of(NET2) is not None


def test_a_dead_dnsmasq_is_restarted_on_the_next_sync(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A)])
    pid = mgr.pid_of(NET)
    assert pid is not None
    fake.crash(pid)
    assert mgr.check([server(A)]) == [f"dhcp {NET}: dnsmasq is not running"]
    rep = mgr.sync([server(A)])
    assert rep.started == [NET] and mgr.pid_of(NET) not in (None, pid)
    assert fake.signals == []  # nothing was signalled: the old pid is not ours any more


def test_a_foreign_process_behind_our_pid_file_is_never_signalled(
    mgr: DnsmasqManager, fake: FakeRunner
) -> None:
    mgr.sync([server(A)])
    p = mgr.paths(NET)
    fake.crash(mgr.pid_of(NET) or 0)
    stranger = fake.spawn(["/usr/sbin/sshd", "-D"])
    other_dnsmasq = fake.spawn(["dnsmasq", "--pid-file=/run/other.pid", "--listen-address=192.0.2.1"])
    p.pid.write_text(f"{stranger}\n")
    assert mgr.pid_of(NET) is None
    assert mgr.sync([server(A)]).started == [NET]
    (ours,) = fake.dnsmasqs("dnsmasq", f"{mgr.base}/")
    # the pid file overwritten: the real dnsmasq is still found by what it is, no second
    # one is started, and only ours is ever signalled
    p.pid.write_text(f"{other_dnsmasq}\n")
    assert mgr.pid_of(NET) == ours
    rep = mgr.sync([server(A)])
    assert rep.started == rep.restarted == [] and len(fake.started) == 2
    assert mgr.sync([]).stopped == [NET]
    assert [pid for pid, _ in fake.signals] == [ours]
    assert stranger in fake.dump() and other_dnsmasq in fake.dump()


def test_never_two_per_network_and_orphans_are_ended(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.sync([server(A)])
    ours = mgr.pid_of(NET)
    cmd = fake.dump()[ours or 0]
    twin = fake.spawn(cmd)  # a second dnsmasq for the same network (a lost pid file, say)
    assert any("2 dnsmasq serve it" in line for line in mgr.check([server(A)]))
    rep = mgr.sync([server(A)])
    assert rep.duplicates_ended == 1 and twin not in fake.dump() and ours in fake.dump()
    assert mgr.check([server(A)]) == []
    # an orphan: its network's directory is gone, the process still runs
    orphan_cmd = [a.replace(NET, NET2) for a in cmd]
    orphan = fake.spawn(orphan_cmd)
    elsewhere = fake.spawn(orphan_cmd)
    fake.elsewhere.add(elsewhere)  # the same paths in another network namespace: not ours
    assert f"dhcp {NET2}: dnsmasq {orphan} runs for a network this host no longer serves" in mgr.check(
        [server(A)]
    )
    assert mgr.sync([server(A)]).stopped == [NET2]
    assert orphan not in fake.dump() and elsewhere in fake.dump() and ours in fake.dump()


def test_one_failing_network_does_not_block_the_others(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    fake.fail_next_start = "failed to create listening socket for 10.0.0.1: Cannot assign requested address"
    other = server(uuid=NET2, listen_address="10.1.0.1", dhcp_start="10.1.0.2")
    rep = mgr.sync([server(A), other])
    assert not rep.ok and "Cannot assign requested address" in rep.errors[NET]
    assert rep.started == [NET2]
    assert mgr.sync([server(A), other]).started == [NET]


def test_check_reports_drift(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    assert mgr.check([server(A)]) == [
        f"dhcp {NET}: dnsmasq is not running",
        f"dhcp {NET}: {mgr.paths(NET).hosts_dir} is missing",
    ]
    mgr.sync([server(A, B)])
    p = mgr.paths(NET)
    (p.hosts_dir / "fa-16-3e-00-00-0a").unlink()
    (p.hosts_dir / "fa-16-3e-00-00-0b").write_text("fa:16:3e:00:00:0b,10.0.0.99\n")
    (p.hosts_dir / "fa-16-3e-00-00-99").write_text("x\n")
    p.opts.chmod(0o600)
    drift = mgr.check([server(A, B, listen_address="10.0.0.9")])
    assert drift == [
        f"dhcp {NET}: dnsmasq {mgr.pid_of(NET)} runs with outdated arguments",
        f"dhcp {NET}: host file fa-16-3e-00-00-0a is missing",
        f"dhcp {NET}: stale host file fa-16-3e-00-00-99",
        f"dhcp {NET}: host file fa-16-3e-00-00-0b differs",
        f"dhcp {NET}: options file differs",
    ]
    assert mgr.check([]) == [
        f"dhcp {NET}: dnsmasq {mgr.pid_of(NET)} runs for a network this host no longer serves"
    ]


def test_check_flags_a_state_dir_dnsmasq_cannot_reach(tmp_path: Path, fake: FakeRunner) -> None:
    base = tmp_path / "private"
    base.mkdir(mode=0o700)
    base.chmod(0o700)
    m = DnsmasqManager(base / "networks", "h1", SCRIPT, fake)
    m.sync([server(A)])
    assert any("not searchable by dnsmasq's unprivileged user" in d for d in m.check([server(A)]))


def test_leftover_temporary_files_are_cleaned(mgr: DnsmasqManager) -> None:
    mgr.sync([server(A)])
    (mgr.paths(NET).hosts_dir / ".fa-16-3e-00-00-0b.tmp").write_text("half")
    mgr.sync([server(A)])
    assert [x.name for x in mgr.paths(NET).hosts_dir.iterdir()] == ["fa-16-3e-00-00-0a"]


def test_agents_of_two_hosts_share_a_machine(state: Path, fake: FakeRunner) -> None:
    m1 = DnsmasqManager(state, "host-1", SCRIPT, fake)
    m2 = DnsmasqManager(state, "host-2", SCRIPT, FakeRunner(first_pid=9000))
    m1.sync([server(A)])
    m2.sync([server(B)])
    assert m1.paths(NET).root != m2.paths(NET).root
    assert m1.pid_of(NET) is not None and m2.sync([]).stopped == [NET]
    assert m1.pid_of(NET) is not None and (m1.paths(NET).hosts_dir / "fa-16-3e-00-00-0a").exists()


def test_release_runs_dhcp_release_as_an_argument_list(mgr: DnsmasqManager, fake: FakeRunner) -> None:
    mgr.release("br100", "10.0.0.2", "FA:16:3E:00:00:0A")
    assert fake.commands == [["dhcp_release", "br100", "10.0.0.2", MAC_A]]
    for bad in (("br 100", "10.0.0.2", MAC_A), ("br100", "10.0.0.2;x", MAC_A), ("br100", "10.0.0.2", "mac")):
        with pytest.raises(InvalidInput):
            mgr.release(*bad)
