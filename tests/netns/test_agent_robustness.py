"""Robustness of a real agent (VLAN manager, one host, two project networks):

- bad rows: each malformed value written straight into the database leaves the healthy
  network converged and filtered (a new instance there gets its lease and its filter
  entry), and `agent check` names the bad row;
- dnsmasq: a pid file written over does not make the agent start a second one; a second
  dnsmasq for a network is ended;
- teardown: a network disassociated from its project and host, and one deleted, leave
  no bridge, address, dnsmasq or nftables element on the host, within one sync.

Verified with `ip -j`, `nft -j list`, /proc and a real DHCP client.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hostlab import NOVANET, Lab, eventually, floating_local
from lab_extra_vlan import map_elements, set_elements
from nslab import Netns, World

from novanet import config as C
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.db.schema import fixed_ips, floating_ips, hosts, networks, virtual_interfaces
from novanet.domain.modes import VLAN
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

PUBLIC_HOST = "203.0.113.1"
HOST = "rnet1"


def _lab(lab: Lab, world: World) -> tuple[Netns, Path, dict[str, dict[str, Any]], dict[str, Netns]]:
    outside, host = world.ns("rout"), world.ns("rhost")
    world.veth(host, "pub0", outside, "out0")
    host.run("ip", "addr", "add", f"{PUBLIC_HOST}/24", "dev", "pub0")
    conf = lab.config(
        HOST,
        network_manager="vlan",
        public_interface="pub0",
        my_ip=PUBLIC_HOST,
        vpn_ip=PUBLIC_HOST,
        host=HOST,
        network_host=HOST,
        metadata_host="",
        agent_resync_interval="2",  # hand edits of the database are noticed by the resync
    )
    with _service(conf) as ctx:
        N.create_networks(
            ctx,
            VLAN,
            N.NetworkRequest(label="r", fixed_range_v4="10.20.0.0/16", num_networks=2, network_size=256),
        )
        F.create_pool(ctx, "203.0.113.16/29", interface="pub0")
        vifs = {project: _allocate(ctx, project, floating=True) for project in ("pa", "pb")}
    lab.start_agent(host, conf, HOST)
    vms = {}
    for project, vif in vifs.items():
        vm = vms[project] = world.ns(f"r{project}")
        eventually(lambda v=vif: _has_link(host, v["network"]["bridge"]), 30, what="the bridges")
        lab.cli(conf, "vif", "plug", vif["instance"], "--netns", vm.name, ns=host)
        assert lab.dhcp(vm) == _fixed(vif)
    return host, conf, vifs, vms


@contextlib.contextmanager
def _service(conf: Path) -> Iterator[Ctx]:
    """The service layer in this process: setup without a CLI start-up per call."""
    cfg = C.load(config_files=[str(conf)])
    engine = create_engine(cfg.database_url)
    ensure_schema(engine)
    try:
        yield Ctx(engine, cfg)
    finally:
        engine.dispose()


def _allocate(ctx: Ctx, project: str, floating: bool = False) -> dict[str, Any]:
    u = str(uuid.uuid4())
    [vif] = I.allocate_for_instance(ctx, VLAN, I.AllocateRequest(u, project, HOST))
    out = {**vif, "instance": u}
    if floating:
        out["floating"] = str(F.allocate(ctx, project)["address"])
        F.associate(ctx, out["floating"], u)
    return out


def _fixed(vif: dict[str, Any]) -> str:
    return str(vif["network"]["subnets"][0]["ips"][0]["address"])


def _has_link(ns: Netns, name: str) -> bool:
    return ns.ok("ip", "-j", "link", "show", "dev", name)


def _addresses(ns: Netns) -> set[str]:
    return {
        a["local"] for link in json.loads(ns.run("ip", "-j", "-4", "addr")) for a in link.get("addr_info", [])
    }


def _check(ns: Netns, conf: Path) -> tuple[int, str]:
    argv = [
        "ip",
        "netns",
        "exec",
        ns.name,
        NOVANET,
        "--config-file",
        str(conf),
        "agent",
        "check",
        "--host",
        HOST,
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout + res.stderr


def _dnsmasq_of(network_uuid: str) -> list[int]:
    """Live dnsmasq main processes (not their lease helpers) serving one network, from
    /proc: a helper is the child of one of them."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv[0].endswith(b"dnsmasq") and any(network_uuid.encode() in a for a in argv):
            found[int(proc.name)] = ppid
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def _write(lab: Lab, table: sa.Table, where: Any, **values: Any) -> tuple[Any, dict[str, Any]]:
    """Set columns of one row straight in the database; returns the row's key and the
    old values (to put them back)."""
    engine = create_engine(lab.db_url)
    keys = list(table.primary_key.columns)
    try:
        with engine.begin() as conn:
            row = conn.execute(sa.select(*keys, *(table.c[k] for k in values)).where(where)).one()
            conn.execute(table.update().where(where).values(**values))
        key = sa.and_(*(c == row._mapping[c.name] for c in keys))
        return key, {k: row._mapping[k] for k in values}
    finally:
        engine.dispose()


def test_a_bad_row_never_stops_the_host(lab: Lab, world: World) -> None:
    host, conf, vifs, vms = _lab(lab, world)
    pa, pb = vifs["pa"], vifs["pb"]
    with _service(conf) as ctx:
        net_b = next(n.public() for n in N.list_networks(ctx) if n.uuid == pb["network"]["id"])
    vif_b = pb["id"]
    ref_b = f"network {net_b['id']} ({net_b['uuid']})"
    on_b = networks.c.uuid == net_b["uuid"]
    fip_b = floating_ips.c.address == pb["floating"]
    on_vif = virtual_interfaces.c.uuid == vif_b
    cases: list[tuple[sa.Table, Any, dict[str, Any], str]] = [
        (networks, on_b, {"bridge": "br 101;x"}, f"{ref_b}: invalid bridge name"),
        (networks, on_b, {"bridge_interface": "eth0;x"}, f"{ref_b}: invalid bridge_interface"),
        (networks, on_b, {"dns1": "8.8.8.8\n"}, f"{ref_b}: dns1 '8.8.8.8\\n'"),
        (networks, on_b, {"cidr": " 10.20.1.0/24"}, f"{ref_b}: cidr"),
        (networks, on_b, {"vlan": 99999}, f"{ref_b}: vlan 99999"),
        (floating_ips, fip_b, {"interface": "pub0\n"}, f"floating {pb['floating']}: invalid interface"),
        (virtual_interfaces, on_vif, {"address": "fa:16:3e:zz:00:01"}, f"vif {vif_b}: MAC"),
        (fixed_ips, fixed_ips.c.address == _fixed(pb), {"address": "10.20.1.999"}, f"vif {vif_b}: fixed"),
        # this host's own row: a host reads only its own and its VXLAN peers' rows
        (hosts, hosts.c.name == HOST, {"underlay_address": "192.0.2.999"}, f"host {HOST}: underlay"),
    ]  # fmt: skip
    timings = []
    for i, (table, where, bad, needle) in enumerate(cases):
        t0 = time.monotonic()
        key, good = _write(lab, table, where, **bad)
        # A new instance of the healthy project: served and filtered in spite of the bad row.
        with _service(conf) as ctx:
            vif = _allocate(ctx, "pa")
        vm = world.ns(f"ra{i}")
        lab.cli(conf, "vif", "plug", vif["instance"], "--netns", vm.name, ns=host)
        assert lab.dhcp(vm) == _fixed(vif), (bad, lab.agent_log(HOST)[-3000:])
        assert vif["devname"] in set_elements(host, "vif-ports", "bridge")
        assert pa["floating"] in floating_local(host, "pub0")
        rc, out = _check(host, conf)
        assert rc == 1 and f"database: row skipped, {needle}" in out, (bad, out)
        _write(lab, table, key, **good)  # (each case breaks another column)
        timings.append(round(time.monotonic() - t0, 1))
    eventually(lambda: _check(host, conf)[0] == 0, 30, 0.5, "convergence once every row is good again")
    assert lab.dhcp(vms["pb"]) == _fixed(pb)  # the other project is served again too
    # Logged once per row at most, never at every sync: a row changed behind the change
    # log's back is seen by a full read (the periodic check, `agent check` above), not by
    # the incremental syncs of the healthy project's instances.
    agent_log = lab.agent_log(HOST)
    logged = [agent_log.count(f"database row skipped on {HOST}: {needle}") for *_, needle in cases]
    assert max(logged) == 1, (logged, agent_log)
    print("seconds per bad row:", timings)


def test_dnsmasq_found_by_what_it_is_and_networks_torn_down(lab: Lab, world: World) -> None:
    host, conf, vifs, vms = _lab(lab, world)
    pa, pb = vifs["pa"], vifs["pb"]
    net_a, net_b = pa["network"], pb["network"]
    (server_a,) = _dnsmasq_of(net_a["id"])

    # The pid file written over (with a process that is not ours): no second dnsmasq,
    # the other process untouched.
    sleeper = host.popen("sleep", "600", stdout=subprocess.DEVNULL)
    lab.helpers.append(sleeper)
    (pid_file,) = lab.root.glob(f"state-{HOST}/networks/{HOST}/{net_a['id']}/pid")
    pid_file.write_text(f"{sleeper.pid}\n")
    time.sleep(4.5)  # two probes and a resync: each would have started another
    assert _dnsmasq_of(net_a["id"]) == [server_a] and sleeper.poll() is None
    assert _check(host, conf)[0] == 0

    # A second dnsmasq for the same network (its own command line, run again): the agent
    # ends one of the two, and the instance is still served.
    argv = [a.decode() for a in Path(f"/proc/{server_a}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    host.run(*argv)
    assert len(_dnsmasq_of(net_a["id"])) == 2
    eventually(lambda: len(_dnsmasq_of(net_a["id"])) == 1, 15, 0.2, "the duplicate dnsmasq ended")
    assert lab.dhcp(vms["pa"]) == _fixed(pa)
    (server_a,) = _dnsmasq_of(net_a["id"])

    def full_syncs() -> int:
        return lab.agent_log(HOST).count(f"full sync of {HOST}:")

    # Disassociated from its project and its host: nothing of network B stays.
    lab.cli(conf, "floating", "disassociate", pb["floating"])
    lab.cli(conf, "instance", "deallocate", pb["instance"])
    before = full_syncs()
    lab.cli(conf, "network", "modify", net_b["id"], "--disassociate-project", "--disassociate-host")
    _gone(host, net_b, pb, eventually_within=10)
    assert full_syncs() == before, "torn down by a full sync, not by the sync that saw the change"
    assert _has_link(host, net_a["bridge"]) and _dnsmasq_of(net_a["id"]) == [server_a]
    rc, out = _check(host, conf)
    assert rc == 0, out

    # Deleted: nothing of network A stays either.
    lab.cli(conf, "floating", "disassociate", pa["floating"])
    lab.cli(conf, "instance", "deallocate", pa["instance"])
    lab.cli(conf, "network", "modify", net_a["id"], "--disassociate-project")
    lab.cli(conf, "network", "delete", "--uuid", net_a["id"])
    _gone(host, net_a, pa, eventually_within=10)
    rc, out = _check(host, conf)
    assert rc == 0, out
    os.kill(sleeper.pid, signal.SIGTERM)


def _gone(host: Netns, net: dict[str, Any], vif: dict[str, Any], eventually_within: float) -> None:
    bridge, gateway = net["bridge"], net["subnets"][0]["gateway"]

    def gone() -> bool:
        assert not _has_link(host, bridge), f"{bridge} still exists"
        assert gateway not in _addresses(host), f"{gateway} still on the host"
        assert vif["floating"] not in floating_local(host) | _addresses(host), "floating IP still local"
        assert _dnsmasq_of(net["id"]) == [], "dnsmasq still runs"
        assert bridge not in set_elements(host, "bridges")
        assert net["subnets"][0]["cidr"] not in set_elements(host, "snat-ranges")
        assert vif["floating"] not in map_elements(host, "floating-dnat")
        assert vif["devname"] not in set_elements(host, "vif-ports", "bridge")
        return True

    eventually(gone, eventually_within, 0.2, f"network {net['id']} torn down")
