"""The agent and the cloudpipe VPN appliances (FakeAppliances), on a real SQLite database
written through the service layer: started when the project's VPN is wanted on the host
that serves its VLAN network, restarted when it dies, stopped when the network leaves,
reported by `agent check`; and the bridge filter knows its port."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from novanet import config as C
from novanet.agent.loop import PROBE_INTERVAL, Agent, Realizers
from novanet.agent.ports import unknown_ports
from novanet.db.engine import create_engine
from novanet.db.migrate import ensure_schema
from novanet.domain.modes import VLAN
from novanet.host.dnsmasq.realizer import DnsmasqManager, FakeRunner
from novanet.host.netlink.base import Link
from novanet.host.netlink.realizer import FakeLinks
from novanet.host.nft.realizer import FakeNft
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service import vpn as V
from novanet.service.context import Ctx
from novanet.vpn.appliance import FakeAppliances

HOST = "net1"


@dataclass
class Env:
    ctx: Ctx
    agent: Agent
    vpn: FakeAppliances
    nft: FakeNft
    now: list[float]

    def tick(self, seconds: float) -> None:
        self.now[0] += seconds


def _env(auto_start: bool = True, multi_host: bool = False) -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="novanet-vpn-"))
    root.chmod(0o755)
    url = f"sqlite:///{root}/novanet.sqlite"
    engine = create_engine(url)
    ensure_schema(engine)
    cfg = C.load(
        overrides={
            "network_manager": "vlan",
            "public_interface": "pub0",
            "my_ip": "203.0.113.1",
            "host": HOST,
            "network_host": HOST,
            "metadata_host": "",
            "cnt_vpn_clients": 4,
            "vpn_auto_start": auto_start,
            "connection": url,
            "state_path": str(root),
        }
    )
    ctx = Ctx(engine, cfg)
    req = N.NetworkRequest(label="v", fixed_range_v4="10.9.0.0/16", num_networks=2, multi_host=multi_host)
    N.create_networks(ctx, VLAN, req)
    links = FakeLinks()
    links.add_nic("pub0")
    nft = FakeNft()
    vpn = FakeAppliances()
    dhcp = DnsmasqManager(root / "networks", HOST, ["/bin/true"], FakeRunner())
    now = [1000.0]
    agent = Agent(
        ctx, HOST, Realizers(links, nft, dhcp, forwarding=lambda: None, vpn=vpn), clock=lambda: now[0]
    )
    try:
        yield Env(ctx, agent, vpn, nft, now)
    finally:
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env() -> Iterator[Env]:
    yield from _env()


def _boot(env: Env, project: str = "pa") -> str:
    u = str(uuid.uuid4())
    I.allocate_for_instance(env.ctx, VLAN, I.AllocateRequest(u, project, HOST))
    return u


def test_appliance_follows_the_wanted_vpn(env: Env) -> None:
    _boot(env, "pa")
    _boot(env, "pb")
    env.agent.step()
    assert env.vpn.dump() == []  # no `vpn create` yet: no appliance
    V.create(env.ctx, "pa")
    assert env.agent.partial_sync()
    [app] = env.vpn.up.values()
    assert (app.project, app.cidr, app.vpn_address, app.pool_start, app.pool_end) == (
        "pa", "10.9.0.0/24", "10.9.0.2", "10.9.0.251", "10.9.0.254",
    )  # fmt: skip
    assert app.bridge == "br100" and len(app.port) <= 15
    assert env.agent.check() == []
    # the bridge filter knows the port and what it may carry
    bridge = {o["set"]["name"]: o["set"].get("elem", []) for o in env.nft.dump()["nftables"] if "set" in o}
    assert bridge["appliance-ports"] == [app.port]
    applied = env.agent.applied
    assert applied is not None
    plugged = Link(app.port, 9, "veth", True, 1500, "02:00:00:00:00:09", master="br100")
    assert unknown_ports([plugged], applied) == []
    assert unknown_ports([plugged], replace(applied, appliances=())) != []

    # killed: the probe sees it and the full sync starts it again
    env.vpn.kill(app.port)
    assert env.agent.check() == ["vpn: appliance of project pa: openvpn is not running"]
    starts = env.vpn.starts
    env.tick(PROBE_INTERVAL)
    env.agent.step()
    assert env.vpn.starts == starts + 1 and env.vpn.dump() == [app.port]

    # the periodic resync keeps the running appliances up (their CRL signed in time)
    env.tick(env.ctx.config.agent_resync_interval)
    env.agent.step()
    assert env.vpn.maintained == [app.port]

    # the network leaves this host: the appliance goes with it
    N.modify_network(env.ctx, "10.9.0.0/24", disassociate_host=True)
    env.agent.partial_sync()
    assert env.vpn.dump() == []


def test_a_failing_appliance_is_reported_not_retried_hot(env: Env) -> None:
    _boot(env, "pa")
    V.create(env.ctx, "pa")
    env.agent.step()
    [port] = env.vpn.dump()
    env.vpn.broken.add(port)
    env.vpn.kill(port)
    env.tick(PROBE_INTERVAL)
    env.agent.step()  # the probe's full sync tries once and fails
    starts = env.vpn.starts
    env.tick(PROBE_INTERVAL)
    env.agent.step()
    assert env.vpn.starts == starts  # not every probe
    assert env.agent.check() == ["vpn: appliance of project pa: openvpn is not running"]


def test_auto_start_off_runs_no_appliance() -> None:
    for env in _env(auto_start=False):
        _boot(env, "pa")
        V.create(env.ctx, "pa")
        env.agent.step()
        assert env.vpn.dump() == [] and env.agent.check() == []


def test_only_the_network_host_runs_the_appliance(env: Env) -> None:
    _boot(env, "pa")
    V.create(env.ctx, "pa")
    here = env.agent.desired()
    other = Agent(env.ctx, "compute9", env.agent.realizers).desired()
    assert [a.project for a in here.appliances] == ["pa"]
    assert other.appliances == ()


def test_multi_host_the_vpn_ip_host_runs_it_routed_by_its_own_address() -> None:
    for env in _env(multi_host=True):
        other_cfg = replace(env.ctx.config, host="compute9", my_ip="203.0.113.9")
        other = Agent(Ctx(env.ctx.engine, other_cfg), "compute9", env.agent.realizers)
        for host in (HOST, "compute9"):
            I.allocate_for_instance(env.ctx, VLAN, I.AllocateRequest(str(uuid.uuid4()), "pa", host))
        V.create(env.ctx, "pa")
        [app] = env.agent.desired().appliances  # vpn_ip here is the network's VPN address
        assert other.desired().appliances == ()
        mine = [a for a in env.agent.desired().bridges[0].addresses]
        assert f"{app.gateway}/24" in mine and app.gateway != "10.9.0.1"


def test_multi_host_vpn_is_probed_not_pending_for_want_of_a_network_host() -> None:
    """A multi-host network never gets a host: `vpn list` still probes its VPN (the host
    whose vpn_ip is its public address serves it), as it does a single-host network's."""
    for multi_host in (True, False):
        for env in _env(multi_host=multi_host):
            I.allocate_for_instance(env.ctx, VLAN, I.AllocateRequest(str(uuid.uuid4()), "pa", HOST))
            V.create(env.ctx, "pa")
            [row] = V.list_vpns(env.ctx, probe=False)
            assert row["host"] == (None if multi_host else HOST)
            assert row["state"] == "unknown"  # past "pending": probe=False stops before the probe
