"""The cloudpipe VPN end to end, with Debian's openvpn on both ends.

VLAN mode on one host, two projects with two instances each (real DHCP leases). An
"outside" namespace reaches only the host's public interface. The agent runs each
project's VPN appliance; from outside, a stock `openvpn --config <project>.ovpn` (the
file `novanet vpn client-config` prints, nothing else) joins the project's segment and
reaches its instances on their fixed IPs, and nothing of the other project. A revoked
user is refused; a `kill -9` of the server is repaired by the agent and the client comes
back; `vpn list` probes the servers for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hostlab import Lab, eventually
from lab_extra_vlan import counter_packets, dhcp_lease, ipv4_of, parallel, ports_of, set_elements
from nslab import Netns, World, sh

PUBLIC_HOST = "203.0.113.1"
OUTSIDE = "203.0.113.254"
HOST = "vpnh1"
PA1 = "a1111111-1111-4111-8111-1111111111a1"
PA2 = "a2222222-2222-4222-8222-2222222222a2"
PB1 = "b1111111-1111-4111-8111-1111111111b1"
PB2 = "b2222222-2222-4222-8222-2222222222b2"
POOL = 4  # cnt_vpn_clients

pytestmark = pytest.mark.skipif(
    not Path("/usr/sbin/openvpn").exists(), reason="openvpn is not installed (scripts/setup.sh installs it)"
)


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _run_ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def _project_of(lab: Lab, namespace: str) -> str:
    conf = next(lab.root.glob(f"state-*/vpn/{namespace}/server.conf")).read_text()
    return conf.splitlines()[0].rsplit(" ", 1)[-1]


def _server_pids(lab: Lab) -> dict[str, int]:
    """namespace -> pid of the openvpn servers the agent of this lab started."""
    out = {}
    for pid_file in lab.root.glob("state-*/vpn/nnvpn-*/pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            argv = _cmdline(pid)
            if (
                argv
                and argv[0].endswith(b"openvpn")
                and str(pid_file.parent / "server.conf").encode() in argv
            ):
                out[pid_file.parent.name] = pid
    return out


def _sweep_leftovers() -> None:
    """Servers of an earlier, killed run of this test: their lab directory is gone."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        argv = _cmdline(int(proc.name))
        if not argv or not argv[0].endswith(b"openvpn") or b"--config" not in argv:
            continue
        conf = Path(argv[argv.index(b"--config") + 1].decode(errors="replace"))
        if conf.match("/tmp/novanet-lab-*/state-*/vpn/nnvpn-*/server.conf") and not conf.parents[3].exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
            sh(["ip", "netns", "del", conf.parent.name], check=False)


@pytest.fixture
def appliances(lab: Lab) -> Iterator[None]:
    """After the test: the servers our agent started are ended, their namespaces gone."""
    _sweep_leftovers()
    yield
    for proc in lab.agents:  # first, or an agent would start a killed server again
        lab.stop_agent(proc)
    for pid in _server_pids(lab).values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for d in lab.root.glob("state-*/vpn/nnvpn-*"):
        sh(["ip", "netns", "del", d.name], check=False)


class Client:
    """A stock openvpn client in ``ns`` with one .ovpn file, logging to a file."""

    def __init__(self, lab: Lab, ns: Netns, config: Path) -> None:
        self.log = lab.root / f"{config.stem}.log"
        self.log.write_text("")
        self.proc = ns.popen(
            "openvpn", "--config", str(config), "--log", str(self.log), "--verb", "3",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        lab.helpers.append(self.proc)
        self.ns = ns

    def connected(self, times: int = 1) -> bool:
        return self.log.read_text().count("Initialization Sequence Completed") >= times

    def address(self) -> str | None:
        for dev in ("tap0", "tap1"):
            got = ipv4_of(self.ns, dev) if self.ns.ok("ip", "link", "show", dev) else set()
            if got:
                return next(iter(got)).split("/")[0]
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _allocate(lab: Lab, conf: Any, uuid: str, project: str) -> dict[str, Any]:
    [vif] = lab.cli_json(conf, "instance", "allocate", uuid, "--project-id", project, "--host", HOST)
    return vif  # type: ignore[no-any-return]


def _address(vif: dict[str, Any]) -> str:
    return vif["network"]["subnets"][0]["ips"][0]["address"]  # type: ignore[no-any-return]


def _ping(ns: Netns, address: str) -> bool:
    return ns.ok("ping", "-c", "1", "-W", "2", address)


def _states(lab: Lab, conf: Path, ns: Netns) -> dict[str, str]:
    rows = json.loads(lab.cli(conf, "vpn", "list", "--json", ns=ns))  # probed from ``ns``
    return {r["project_id"]: r["state"] for r in rows}


def test_cloudpipe_end_to_end(lab: Lab, world: World, appliances: None) -> None:
    outside, host = world.ns("vpnout"), world.ns("vpnhost")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    outside.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "out0")  # no other route: public only
    conf = lab.config(
        HOST, network_manager="vlan", public_interface="pub0", my_ip=PUBLIC_HOST, vpn_ip=PUBLIC_HOST,
        host=HOST, network_host=HOST, metadata_host="", cnt_vpn_clients=POOL,
    )  # fmt: skip
    nets = lab.cli_json(
        conf, "network", "create", "--label", "v", "--fixed-range-v4", "10.40.0.0/16",
        "--num-networks", "2", "--network-size", "256",
    )  # fmt: skip
    agent = lab.start_agent(host, conf, HOST)
    wanted = ((PA1, "pa"), (PA2, "pa"), (PB1, "pb"), (PB2, "pb"))
    done = parallel(*(partial(_allocate, lab, conf, *w) for w in wanted))
    vifs = dict(zip((w[0] for w in wanted), done, strict=True))
    by_uuid = {n["uuid"]: n for n in nets}
    net_a, net_b = by_uuid[vifs[PA1]["network"]["id"]], by_uuid[vifs[PB1]["network"]["id"]]
    assert net_a is not net_b
    vms = {u: world.ns(f"v{u[:2]}{u[-1]}") for u, _ in wanted}
    eventually(
        lambda: (
            f"{net_a['gateway']}/24" in ipv4_of(host, net_a["bridge"])
            and f"{net_b['gateway']}/24" in ipv4_of(host, net_b["bridge"])
        ),
        30,
        what="gateways on both bridges",
    )
    parallel(
        *(partial(lab.cli, conf, "vif", "plug", u, "--netns", vm.name, ns=host) for u, vm in vms.items())
    )
    for u, vm in vms.items():
        lease = dhcp_lease(lab, vm)
        assert lease is not None and lease["ip"] == _address(vifs[u]), (u, lease)
    a1, a2, b1, b2 = (_address(vifs[u]) for u in (PA1, PA2, PB1, PB2))
    listeners = {u: lab.listen(vms[u], 8080) for u in (PA1, PB1)}

    # Before `vpn create` nothing answers on the VPN ports.
    assert _states(lab, conf, outside) == {}
    created = time.monotonic()
    for project in ("pa", "pb"):
        lab.cli(conf, "vpn", "create", "--project", project)
    eventually(
        lambda: _states(lab, conf, outside) == {"pa": "running", "pb": "running"}, 30, what="both VPNs up"
    )
    started_in = time.monotonic() - created
    print(f"both appliances answering {started_in:.1f} s after vpn create")
    # The appliance ports are known to the bridge filter and `agent check` finds no drift.
    assert (
        lab.cli(conf, "agent", "check", "--host", HOST, ns=host).strip()
        == f"host {HOST} matches the database"
    )
    app_ports = {
        p for p in ports_of(host, net_a["bridge"]) | ports_of(host, net_b["bridge"]) if p.startswith("nvpn")
    }
    assert len(app_ports) == 2 and set_elements(host, "appliance-ports", "bridge") == app_ports

    ovpn = {}
    for project, user in (("pa", "alice"), ("pb", "bob"), ("pa", "mallory")):
        path = lab.root / f"{project}-{user}.ovpn"
        lab.cli(conf, "vpn", "client-config", "--project", project, "--user", user, "--output", str(path))
        ovpn[user] = path

    # A's user: an address from A's client range, A's instances by ping and TCP.
    pool_a = [IPv4Address(net_a["broadcast"]) - i for i in range(1, POOL + 1)]
    alice = Client(lab, outside, ovpn["alice"])
    t0 = time.monotonic()
    eventually(alice.connected, 30, what="alice connected")
    print(f"alice connected in {time.monotonic() - t0:.1f} s")
    address = eventually(alice.address, 10, what="an address on the client's tap")
    assert IPv4Address(address) in pool_a, address
    assert eventually(lambda: _ping(outside, a1), 15, what=f"ping {a1} through the VPN")
    assert _ping(outside, a2)
    assert lab.connect(outside, a1, 8080)
    assert listeners[PA1].read_text().split() == [address]  # no NAT: the client's own address
    # Nothing of B, even routed at A's gateway on purpose: not B's instances nor B's gateway.
    outside.run("ip", "route", "add", net_b["cidr"], "via", net_a["gateway"])
    for target in (b1, b2, net_b["gateway"]):
        assert not _ping(outside, target), target
    assert not lab.connect(outside, b1, 8080, timeout=2)
    assert listeners[PB1].read_text() == ""
    outside.run("ip", "route", "del", net_b["cidr"])
    alice.stop()

    # The appliance's port carries its own address and the clients' range, nothing else:
    # inside A's appliance (entered through its server's pid), a source outside those is
    # dropped by the bridge filter and counted, its own address passes.
    [(ns_a, pid_a)] = [(n, p) for n, p in _server_pids(lab).items() if _project_of(lab, n) == "pa"]
    inside = ["nsenter", "-t", str(pid_a), "-n"]
    stray = str(IPv4Address(net_a["gateway"]) + 76)  # in A's subnet, not the appliance's
    sh([*inside, "ip", "addr", "add", f"{stray}/24", "dev", "br0"])
    arp, ip = (counter_packets(host, c, "bridge") for c in ("drop-arp-spoof", "drop-ip-spoof"))
    assert not _run_ok([*inside, "arping", "-c", "2", "-w", "2", "-s", stray, "-I", "br0", a1])
    assert counter_packets(host, "drop-arp-spoof", "bridge") > arp
    # with a1's MAC known, the IPv4 packets themselves are sent, and dropped
    sh([*inside, "ip", "neigh", "replace", a1, "lladdr", vifs[PA1]["address"], "dev", "br0"])
    assert not _run_ok([*inside, "ping", "-c", "2", "-i", "0.3", "-W", "1", "-I", stray, a1])
    assert counter_packets(host, "drop-ip-spoof", "bridge") >= ip + 2
    sh([*inside, "ip", "addr", "del", f"{stray}/24", "dev", "br0"])
    assert _run_ok([*inside, "ping", "-c", "1", "-W", "2", a1])  # from vpn_private_address

    # B's user reaches B only.
    bob = Client(lab, outside, ovpn["bob"])
    eventually(bob.connected, 30, what="bob connected")
    address_b = eventually(bob.address, 10, what="bob's address")
    assert IPv4Address(address_b) in [IPv4Address(net_b["broadcast"]) - i for i in range(1, POOL + 1)]
    assert eventually(lambda: _ping(outside, b1), 15, what=f"ping {b1} through B's VPN")
    assert _ping(outside, b2)
    assert lab.connect(outside, b1, 8080)
    outside.run("ip", "route", "add", net_a["cidr"], "via", net_b["gateway"])
    for target in (a1, a2, net_a["gateway"]):
        assert not _ping(outside, target), target
    outside.run("ip", "route", "del", net_a["cidr"])
    bob.stop()

    # Mallory connects, is revoked, and is refused at the next connection: no restart by hand.
    mallory = Client(lab, outside, ovpn["mallory"])
    eventually(mallory.connected, 30, what="mallory connected before revocation")
    mallory.stop()
    lab.cli(conf, "vpn", "revoke", "--project", "pa", "--user", "mallory")
    mallory = Client(lab, outside, ovpn["mallory"])
    time.sleep(10)
    assert not mallory.connected(), mallory.log.read_text()[-2000:]
    assert mallory.address() is None
    mallory.stop()
    server_log = next(lab.root.glob(f"state-*/vpn/{ns_a}/log")).read_text()
    assert "revoked" in server_log.lower(), server_log[-2000:]

    # kill -9 of A's server: the agent starts it again and a connected client comes back.
    alice = Client(lab, outside, ovpn["alice"])
    eventually(alice.connected, 30, what="alice connected again")
    old = _server_pids(lab)[ns_a]
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    new = eventually(lambda: _server_pids(lab).get(ns_a, old) != old and _server_pids(lab)[ns_a], 20,
                     what="A's server restarted by the agent")  # fmt: skip
    print(f"A's server restarted {time.monotonic() - t0:.1f} s after kill -9 (pid {old} -> {new})")
    eventually(lambda: alice.connected(2), 60, what="alice reconnected by herself")
    print(f"alice reconnected {time.monotonic() - t0:.1f} s after kill -9")
    assert eventually(lambda: _ping(outside, a1), 15, what="A reachable again")
    alice.stop()

    # With the agent stopped, a killed server stays down, and `vpn list` says so.
    lab.stop_agent(agent)
    os.kill(_server_pids(lab)[ns_a], signal.SIGKILL)
    eventually(lambda: ns_a not in _server_pids(lab), 10, what="server gone")
    assert _states(lab, conf, outside) == {"pa": "down", "pb": "running"}
    drift = lab.cli(conf, "agent", "check", "--host", HOST, ns=host, check=False)
    assert "vpn: appliance of project pa: openvpn is not running" in drift.splitlines(), drift
    lab.start_agent(host, conf, HOST)
    try:
        eventually(
            lambda: _states(lab, conf, outside) == {"pa": "running", "pb": "running"}, 30, what="A back"
        )
    finally:
        print(lab.agent_log(HOST)[-3000:])


def test_boot_bundle_serves_from_a_plain_namespace(lab: Lab, world: World) -> None:
    """`vpn bundle` is all a VPN machine needs: unpacked in a namespace playing the VM and
    started with its start.sh, it serves the same client config through a DNAT."""
    vm, gw, client = world.ns("bvm"), world.ns("bgw"), world.ns("bcl")
    world.veth(gw, "g0", vm, "eth0")
    world.veth(gw, "g1", client, "c0")
    gw.run("ip", "addr", "add", "10.50.0.1/24", "dev", "g0")
    gw.run("ip", "addr", "add", "198.51.100.1/24", "dev", "g1")
    gw.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    client.run("ip", "addr", "add", "198.51.100.2/24", "dev", "c0")
    conf = lab.config(
        "bundle", network_manager="vlan", my_ip="198.51.100.1", vpn_ip="198.51.100.1", cnt_vpn_clients=POOL
    )
    lab.cli(conf, "network", "create", "--label", "b", "--fixed-range-v4", "10.50.0.0/24")
    lab.cli(conf, "instance", "allocate", PA1, "--project-id", "pa", "--host", "h1")
    lab.cli(conf, "vpn", "create", "--project", "pa")
    bundle, ovpn = lab.root / "pa.tgz", lab.root / "pa-bundle.ovpn"
    lab.cli(conf, "vpn", "bundle", "--project", "pa", "--output", str(bundle))
    lab.cli(conf, "vpn", "client-config", "--project", "pa", "--user", "carol", "--output", str(ovpn))
    assert "remote 198.51.100.1 1000" in ovpn.read_text().splitlines()
    # the gateway of the "cloud" forwards the public port to the VM, as a host's DNAT does
    gw.run("nft", "-f", "-", input=(
        "table ip bgw {\n chain pre {\n  type nat hook prerouting priority -100;\n"
        "  udp dport 1000 dnat to 10.50.0.2:1194\n }\n}\n"
    ))  # fmt: skip
    unpacked = lab.root / "vm"
    unpacked.mkdir()
    sh(["tar", "-xzf", str(bundle), "-C", str(unpacked)])
    assert (unpacked / "cloudpipe" / "server.key").stat().st_mode & 0o777 == 0o600
    server = vm.popen("sh", str(unpacked / "cloudpipe" / "start.sh"), stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)  # fmt: skip
    lab.helpers.append(server)
    try:
        carol = Client(lab, client, ovpn)
        eventually(carol.connected, 30, what="carol connected to the bundle's server")
        address = eventually(carol.address, 10, what="carol's address")
        assert IPv4Address(address) in [IPv4Address("10.50.0.255") - i for i in range(1, POOL + 1)]
        assert eventually(lambda: _ping(client, "10.50.0.1"), 15, what="the VM's segment through the VPN")
        carol.stop()
    finally:
        server.terminate()
        server.wait(timeout=10)
