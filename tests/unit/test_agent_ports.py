"""The agent and the ports of bridges: unknown ports reported (and left to the filter's
default drop), ports of other bridges exempted and followed, IPv6 off on instance ports."""

from __future__ import annotations

from test_agent_loop import Env, env, is_full, synced  # noqa: F401  (env is a fixture)

from novanet.agent.loop import PROBE_INTERVAL
from novanet.host.nft.realizer import drift
from novanet.service import instances as I


def test_an_unknown_port_on_our_bridge_is_reported_not_resynced(env: Env) -> None:  # noqa: F811
    synced(env)
    env.links.add_tap("anyname")
    env.links.set_master("anyname", "br100")
    assert env.agent.check() == [
        "ports: port anyname of bridge br100 is no known VIF or segment: its frames are dropped"
    ]
    # the filter already drops it: the periodic resync does not loop on it
    txs = len(env.nft.log)
    env.tick(env.ctx.config.agent_resync_interval + PROBE_INTERVAL)
    env.agent.step()
    assert len(env.nft.log) == txs


def test_a_deallocated_instance_still_plugged_is_an_unknown_port(env: Env) -> None:  # noqa: F811
    synced(env)
    vif = env.agent.applied.vifs[0]  # type: ignore[union-attr]
    env.links.add_veth(vif.port, "peer0")
    env.links.set_master(vif.port, "br100")
    env.agent.full_sync()
    assert env.agent.check() == []
    [instance] = {i.instance_uuid for i in env.agent.snap.vifs.values()}  # type: ignore[union-attr]
    I.deallocate_for_instance(env.ctx, instance)
    env.agent.partial_sync()
    assert vif.port not in {k for k in env.nft.elements("bridge", "vif-ports")}
    assert env.agent.check() == [
        f"ports: port {vif.port} of bridge br100 is no known VIF or segment: its frames are dropped"
    ]


def test_ports_of_other_bridges_are_exempt_and_followed_by_the_probe(env: Env) -> None:  # noqa: F811
    env.links.add_bridge("virbr0")
    env.links.add_tap("vnet0")
    env.links.set_master("vnet0", "virbr0")
    synced(env)
    assert set(env.nft.elements("bridge", "foreign-ports")) == {"vnet0"}
    env.links.add_tap("vnet1")
    env.links.set_master("vnet1", "virbr0")
    assert env.agent.probe() == ["ports of other bridges changed: vnet0, vnet1"]
    env.tick(PROBE_INTERVAL + 0.1)
    env.agent.step()
    assert is_full(env.nft.log[-1])
    assert set(env.nft.elements("bridge", "foreign-ports")) == {"vnet0", "vnet1"}
    assert env.agent.probe() == [] and env.agent.check() == []
    assert drift(env.agent.applied, env.nft) == []  # type: ignore[arg-type]


def test_instance_ports_get_ipv6_off(env: Env) -> None:  # noqa: F811
    synced(env)
    port = env.agent.applied.vifs[0].port  # type: ignore[union-attr]
    env.links.add_tap(port)  # made by libvirt, not by `vif plug`: IPv6 on
    env.links.set_master(port, "br100")
    assert env.agent.check() == [f"links: instance port {port} has IPv6 on"]
    env.agent.full_sync()
    assert env.links.ipv6_off(port) and env.agent.check() == []
