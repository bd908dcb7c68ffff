"""`novanet sandbox` end to end with namespace guests, one run per manager: pings across
hosts, to the outside (SNAT seen by a TCP server outside) and through floating IPs;
`exec`, `status`; `down` leaves the root namespace and the process list as before; `up`
twice is refused; a failure halfway tears down what was built."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hostlab import NOVANET, Lab, eventually
from nslab import Netns, sh

pytestmark = [pytest.mark.netns, pytest.mark.e2e]

OUTSIDE = "203.0.113.254"
FIXED = "10.90.0.0/24"  # the sandbox's network


class Sb:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.conf = state / "novanet.conf"
        self.conf.write_text(f"[DEFAULT]\nstate_path = {state}/state\n")

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [NOVANET, "--config-file", str(self.conf), "sandbox", *args],
            capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"sandbox {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res


def _sandbox_dir() -> Iterator[Sb]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the sandbox tests need root (CI runs as root)")
        pytest.skip("the sandbox needs root")
    d = Path(tempfile.mkdtemp(prefix="novanet-sbt-"))
    d.chmod(0o755)
    s = Sb(d)
    try:
        yield s
    finally:
        for name in (p.name for p in (d / "state" / "sandbox").glob("*") if not p.name.startswith(".")):
            s.run("down", "--name", name, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sb() -> Iterator[Sb]:
    yield from _sandbox_dir()


@pytest.fixture(scope="module")
def qsb() -> Iterator[Sb]:
    """One state directory for the qemu runs: the guest kernel is prepared once."""
    yield from _sandbox_dir()


def root_view() -> dict[str, Any]:
    """The root namespace as `ip` and `nft` show it."""
    return {
        "links": sorted(link["ifname"] for link in json.loads(sh(["ip", "-j", "link", "show"]))),
        "tables": sh(["nft", "list", "tables"]),
    }


def processes_mentioning(text: str) -> list[str]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(f"{p.name}: {cmd}")
    return out


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def name() -> str:
    return "t" + secrets.token_hex(4)


@pytest.mark.parametrize(
    ("manager", "multi_host"),
    [("flat", False), ("flatdhcp", True), ("vlan", False)],
    ids=["flat", "flatdhcp-mh", "vlan"],
)
def test_sandbox_up_exec_down(sb: Sb, lab: Lab, manager: str, multi_host: bool) -> None:
    nm = name()
    before = root_view()
    args = ["up", "--name", nm, "--manager", manager, "--hosts", "2", "--instances", "2", "--json"]
    res = sb.run(*args, *(["--multi-host"] if multi_host else []))
    up = json.loads(res.stdout)
    steps = 6 if manager == "vlan" else 5  # VLAN mode: the project's VPN too
    assert f"[1/{steps}]" in res.stderr and f"[{steps}/{steps}]" in res.stderr  # progress while it builds
    ns = {h["host"]: h["namespace"] for h in up["hosts"]}
    vms = {i["name"]: i for i in up["instances"]}
    assert [vms["vm1"]["host"], vms["vm2"]["host"]] == ["c1", "c2"]
    assert all(n.startswith(f"nvsb-{nm}-") for n in ns.values())
    live = set(sh(["ip", "netns", "list"]).split())
    assert {up["outside"]["namespace"], *ns.values(), *(i["namespace"] for i in vms.values())} <= live

    # The instance holds its fixed IP (from DHCP, or in Flat mode from the injected file).
    for vm in vms.values():
        addrs = json.loads(
            sb.run("exec", "--name", nm, vm["name"], "--", "ip", "-j", "-4", "addr", "show", "eth0").stdout
        )
        assert [a["local"] for a in addrs[0]["addr_info"]] == [vm["fixed_ip"]]
    if manager == "flat":
        # No DHCP server in Flat mode: the address came from the injected interfaces file.
        dnsmasq = [p for p in processes_mentioning(f"sandbox/{nm}/hosts") if "dnsmasq" in p]
        assert dnsmasq == []

    # Across hosts.
    ping = sb.run(
        "exec", "--name", nm, "vm1", "--", "ping", "-c", "1", "-W", "2", vms["vm2"]["fixed_ip"], check=False
    )
    assert ping.returncode == 0, ping.stdout
    # The exit code of the command comes back.
    assert sb.run("exec", "--name", nm, "vm1", "--", "false", check=False).returncode == 1

    # To the outside through SNAT: the outside sees a host's public address. Floating IPs
    # are associated, so the instance leaves as its floating IP.
    outside = Netns(up["outside"]["namespace"])
    peers = lab.listen(outside, 8080)
    assert lab.connect(Netns(vms["vm1"]["namespace"]), OUTSIDE, 8080)
    assert peers.read_text().split() == [vms["vm1"]["floating_ip"]]
    # In through each floating IP.
    for vm in vms.values():
        assert outside.ok("ping", "-c", "1", "-W", "2", vm["floating_ip"]), vm
    inbound = lab.listen(Netns(vms["vm2"]["namespace"]), 2222)
    assert lab.connect(outside, vms["vm2"]["floating_ip"], 2222)
    assert inbound.read_text().split() == [OUTSIDE]
    for proc in lab.helpers:
        proc.kill()
        proc.wait(timeout=10)
    lab.helpers.clear()

    # status: agents up, leases (DHCP modes) and floating IPs.
    st = json.loads(sb.run("status", "--name", nm, "--json").stdout)
    assert st["status"] == "up"
    assert {h["host"]: h["agent"] for h in st["hosts"]} == {"net": "up", "c1": "up", "c2": "up"}
    assert all(i["floating_associated"] for i in st["instances"])
    assert all(i["leased"] for i in st["instances"]) == (manager != "flat")

    # Twice with the same name: refused, nothing changed.
    again = sb.run("up", "--name", nm, "--manager", manager, check=False)
    assert again.returncode != 0 and "already up" in again.stderr and again.stderr.count("\n") == 1

    appliances: dict[str, int] = {}
    if manager == "vlan":
        appliances = _vpn_from_outside(sb, lab, nm, up)

    state_file = Path(up["state_dir"]) / "state.json"
    pids = [p["pid"] for p in json.loads(state_file.read_text())["processes"]]
    pids += list(appliances.values())
    down = sb.run("down", "--name", nm)
    assert "is down" in down.stdout
    assert not [n for n in sh(["ip", "netns", "list"]).split() if n.startswith(f"nvsb-{nm}-")]
    assert root_view() == before
    assert not processes_mentioning(str(sb.state / "state"))
    # Ended: gone, or a zombie until this machine's init reaps it (they are its children now).
    eventually(lambda: all(not running(pid) for pid in pids), 15, what="the agents to end")
    assert not Path(up["state_dir"]).exists()
    # The VPN appliances went with it: their namespaces and their openvpn servers.
    live = set(sh(["ip", "netns", "list"]).split())
    assert appliances.keys().isdisjoint(live), live
    assert not [p for p in processes_mentioning(up["state_dir"]) if "openvpn" in p]


def _appliances(state_dir: str) -> dict[str, int]:
    """nnvpn-* namespace -> pid of its openvpn server, from the agents' run directories."""
    out = {}
    for pid_file in Path(state_dir).glob("hosts/*/vpn/nnvpn-*/pid"):
        pid = int(pid_file.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmd[0].endswith(b"openvpn") and str(pid_file.parent / "server.conf").encode() in cmd
        out[pid_file.parent.name] = pid
    return out


def _tap_addresses(ns: Netns) -> list[str]:
    links = json.loads(ns.run("ip", "-j", "-4", "addr", "show"))
    return [a["local"] for link in links if link["ifname"].startswith("tap") for a in link["addr_info"]]


def _vpn_from_outside(sb: Sb, lab: Lab, nm: str, up: dict[str, Any]) -> dict[str, int]:
    """VLAN mode: the project's VPN is running, and a stock openvpn client in the outside
    namespace with the sandbox's client config reaches the instances on their fixed IPs.
    Returns the appliances (namespace -> openvpn server pid) for the checks after down."""
    vpn = up["vpn"]
    outside = Netns(up["outside"]["namespace"])
    assert vpn["state"] == "running" and vpn["project"] == "demo" and vpn["host"] == "net"
    assert vpn["connect"] == f"ip netns exec {outside.name} openvpn --config {vpn['client_config']}"
    config = Path(vpn["client_config"])
    assert config.stat().st_mode & 0o777 == 0o600
    assert f"remote {vpn['public_ip']} {vpn['public_port']}" in config.read_text().splitlines()
    st = json.loads(sb.run("status", "--name", nm, "--json").stdout)
    assert st["vpn"]["state"] == "running"  # `vpn list`, probed from the outside
    appliances = _appliances(up["state_dir"])
    assert len(appliances) == 1
    assert set(appliances) <= set(sh(["ip", "netns", "list"]).split())

    vms = {i["name"]: i for i in up["instances"]}
    net = IPv4Network(FIXED)
    pool = {str(net.broadcast_address - i) for i in range(1, vpn["client_addresses"] + 1)}
    # Before the VPN, the outside has no way to the fixed IPs.
    assert not outside.ok("ping", "-c", "1", "-W", "1", vms["vm1"]["fixed_ip"])
    log = sb.state / f"vpn-client-{nm}.log"
    log.write_text("")
    client = subprocess.Popen(
        ["ip", "netns", "exec", outside.name, "openvpn", "--config", str(config), "--log", str(log),
         "--verb", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        eventually(lambda: "Initialization Sequence Completed" in log.read_text(), 60, what="VPN connected")
        [address] = eventually(lambda: _tap_addresses(outside), 15, what="an address on the client's tap")
        assert address in pool, (address, pool)
        for vm in vms.values():
            assert eventually(
                lambda vm=vm: outside.ok("ping", "-c", "1", "-W", "2", vm["fixed_ip"]),
                20,
                what=f"ping {vm['fixed_ip']} through the VPN",
            )
            route = json.loads(outside.run("ip", "-j", "route", "get", vm["fixed_ip"]))
            assert route[0]["dev"].startswith("tap"), route
        # The instance sees the client's own address: bridged in, no NAT.
        seen = lab.listen(Netns(vms["vm1"]["namespace"]), 8081)
        assert lab.connect(outside, vms["vm1"]["fixed_ip"], 8081)
        assert seen.read_text().split() == [address]
    finally:
        for proc in lab.helpers:
            proc.kill()
            proc.wait(timeout=10)
        lab.helpers.clear()
        client.send_signal(signal.SIGTERM)
        try:
            client.wait(timeout=15)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait(timeout=10)
        print(log.read_text()[-1500:])
        log.unlink(missing_ok=True)
    return appliances


def test_sandbox_failure_halfway_tears_down(sb: Sb) -> None:
    nm = name()
    before = root_view()
    res = sb.run("up", "--name", nm, "--hosts", "1", "--instances", "1", check=False,
                 env={"NOVANET_SANDBOX_FAIL_AFTER": "4"})  # fmt: skip
    assert res.returncode == 1 and "failing after step 4" in res.stderr, res.stderr
    assert "tearing down" in res.stderr
    assert not [n for n in sh(["ip", "netns", "list"]).split() if n.startswith(f"nvsb-{nm}-")]
    assert root_view() == before
    assert not processes_mentioning(str(sb.state / "state"))
    assert not (sb.state / "state" / "sandbox" / nm).exists()
    # And now it builds.
    sb.run("up", "--name", nm, "--hosts", "1", "--instances", "1")
    sb.run("down", "--name", nm)


# --- qemu guests ---------------------------------------------------------------------------


def _down_clean(sb: Sb, nm: str, before: dict[str, Any], state_dir: str) -> None:
    pids = [p["pid"] for p in json.loads((Path(state_dir) / "state.json").read_text())["processes"]]
    sb.run("down", "--name", nm)
    assert not [n for n in sh(["ip", "netns", "list"]).split() if n.startswith(f"nvsb-{nm}-")]
    assert root_view() == before
    eventually(lambda: all(not running(pid) for pid in pids), 15, what="qemu and the agents to end")
    assert not processes_mentioning(state_dir)
    assert not Path(state_dir).exists()


def test_sandbox_qemu_flatdhcp_guests_take_their_leases(qsb: Sb) -> None:
    nm = name()
    before = root_view()
    up = json.loads(
        qsb.run("up", "--name", nm, "--guest", "qemu", "--hosts", "2", "--instances", "2", "--json").stdout
    )
    vms = {i["name"]: i for i in up["instances"]}
    assert {vm["host"] for vm in vms.values()} == {"c1", "c2"}
    for vm in vms.values():
        # The guest's own kernel holds the address dnsmasq leased to it.
        shown = qsb.run(
            "exec", "--name", nm, vm["name"], "--", "ip", "-4", "-o", "addr", "show", "eth0"
        ).stdout
        assert f" {vm['fixed_ip']}/24 " in shown, shown
        log = (Path(up["state_dir"]) / "guests" / vm["name"] / "console.log").read_text(errors="replace")
        assert "network from DHCP" in log and f"NOVANET-GUEST-LEASE {vm['fixed_ip']}" in log
    # dnsmasq told the database (through dhcpbridge) that both leases are taken.
    st = json.loads(qsb.run("status", "--name", nm, "--json").stdout)
    assert [i["leased"] for i in st["instances"]] == [True, True]
    # A real VM reaches the other across hosts, and the outside reaches it by its floating IP.
    res = qsb.run(
        "exec", "--name", nm, "vm1", "--", "ping", "-c", "1", "-W", "3", vms["vm2"]["fixed_ip"], check=False
    )
    assert res.returncode == 0, res.stdout
    assert Netns(up["outside"]["namespace"]).ok("ping", "-c", "1", "-W", "3", vms["vm2"]["floating_ip"])
    _down_clean(qsb, nm, before, up["state_dir"])


def test_sandbox_qemu_flat_guest_configured_only_by_the_injected_file(qsb: Sb, lab: Lab) -> None:
    nm = name()
    before = root_view()
    args = ["--manager", "flat", "--guest", "qemu", "--hosts", "1", "--instances", "1", "--json"]
    up = json.loads(qsb.run("up", "--name", nm, *args).stdout)
    [vm] = up["instances"]
    gdir = Path(up["state_dir"]) / "guests" / "vm1"
    # The guest's disk holds the injected file, and its init configured eth0 from it.
    injected = sh(["debugfs", "-R", "cat /etc/network/interfaces", str(gdir / "disk.img")])
    assert f"iface eth0 inet static\n    address {vm['fixed_ip']}\n" in injected
    log = (gdir / "console.log").read_text(errors="replace")
    assert (
        "network from the disk's /etc/network/interfaces" in log
        and f"NOVANET-GUEST-READY {vm['fixed_ip']}" in log
    )
    # `console` without a terminal prints the guest's console log.
    shown = qsb.run("console", "--name", nm, "vm1").stdout
    assert f"NOVANET-GUEST-READY {vm['fixed_ip']}" in shown
    # No DHCP server runs in Flat mode.
    assert not [p for p in processes_mentioning(up["state_dir"]) if "dnsmasq" in p]
    # The gateway answers the guest.
    gw = qsb.run("exec", "--name", nm, "vm1", "--", "ping", "-c", "1", "-W", "3", vm["gateway"], check=False)
    assert gw.returncode == 0, gw.stdout
    # Out through SNAT: the outside sees the instance's floating IP, never 10.90.0.x.
    outside = Netns(up["outside"]["namespace"])
    peers = lab.listen(outside, 8080)
    out = qsb.run(
        "exec", "--name", nm, "vm1", "--", "sh", "-c", f"echo hi | nc -w 10 {OUTSIDE} 8080", check=False
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout
    assert peers.read_text().split() == [vm["floating_ip"]]
    for proc in lab.helpers:
        proc.kill()
        proc.wait(timeout=10)
    lab.helpers.clear()
    _down_clean(qsb, nm, before, up["state_dir"])


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_databases(url: str) -> set[str]:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_sandbox_on_postgresql(sb: Sb, pg_server: str) -> None:
    url = pg_server
    nm = name()
    before = root_view()
    up = json.loads(
        sb.run("up", "--name", nm, "--hosts", "2", "--instances", "2", "--db", url, "--json").stdout
    )
    assert up["database"] == f"novanet_sandbox_{nm}" and up["database"] in _pg_databases(url)
    # The agents in their namespaces reach the server through the sandbox's relay.
    st = json.loads(sb.run("status", "--name", nm, "--json").stdout)
    assert {h["host"]: h["agent"] for h in st["hosts"]} == {"net": "up", "c1": "up", "c2": "up"}
    assert [i["leased"] for i in st["instances"]] == [True, True]
    vm2 = st["instances"][1]["fixed_ip"]
    assert (
        sb.run("exec", "--name", nm, "vm1", "--", "ping", "-c", "1", "-W", "2", vm2, check=False).returncode
        == 0
    )
    conf = (Path(up["state_dir"]) / "c1.conf").stat()
    assert conf.st_mode & 0o077 == 0  # the URL holds a password
    sb.run("down", "--name", nm)
    assert up["database"] not in _pg_databases(url)
    assert root_view() == before
    assert not processes_mentioning(up["state_dir"])
