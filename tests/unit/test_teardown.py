"""Networks that leave a host leave nothing behind: bridge (with its segment), gateway
address, dnsmasq, nft elements and /32s go within one sync, also across an agent
restart; until then `agent check` reports them."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from test_agent_loop import HOST, Env, env  # noqa: F401  (the agent fixture, fakes only)

from novanet.agent.loop import Agent
from novanet.domain.modes import FLATDHCP
from novanet.host.owned import Built, OwnedBridges
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N


def test_deleted_network_leaves_nothing_and_a_restarted_agent_cleans_up(env: Env) -> None:  # noqa: F811
    e = env
    N.create_networks(
        e.ctx, FLATDHCP, N.NetworkRequest(label="second", fixed_range_v4="10.1.0.0/24", bridge="br101")
    )
    inst, _ = e.instance()  # a VIF on each flat network
    fip = e.floating(inst)
    e.agent.step()
    assert {"br100", "br101"} <= {link.name for link in e.links.links()}
    assert e.dnat() and e.bound() == {fip}

    # The agent is down while the instance goes and both networks are deleted.
    F.disassociate(e.ctx, fip)
    I.deallocate_for_instance(e.ctx, inst)
    e.agent.partial_sync()
    for net in N.list_networks(e.ctx):
        N.delete_network(e.ctx, uuid=net.uuid)
    restarted = Agent(e.ctx, HOST, e.agent.realizers, clock=e.agent.clock)
    drift = restarted.check()
    assert "links: bridge br100 is left over: no network of this host uses it" in drift, drift
    restarted.step()  # one (full) sync
    assert e.links.link("br100") is None and e.links.link("br101") is None
    assert e.runner.dump() == {} and e.dnat() == {} and e.bound() == set()
    assert restarted.check() == []


def test_nic_bridge_keeps_the_hosts_addresses_and_loses_the_gateway(env: Env) -> None:  # noqa: F811
    e = env
    e.links.add_nic("eth1")
    e.links.add_address("eth1", "192.0.2.10/24")
    e.ctx.config = dataclasses.replace(e.ctx.config, flat_interface="eth1")
    inst, _ = e.instance()
    e.agent.step()
    on_bridge = {a.cidr for a in e.links.addresses("br100")}
    assert on_bridge == {"10.0.0.1/24", "192.0.2.10/24"}
    I.deallocate_for_instance(e.ctx, inst)
    e.agent.partial_sync()
    N.delete_network(e.ctx, uuid=N.list_networks(e.ctx)[0].uuid)
    e.agent.partial_sync()
    # the host's own address (moved from the NIC) stays: the bridge is the host's uplink now
    assert {a.cidr for a in e.links.addresses("br100")} == {"192.0.2.10/24"}
    assert e.agent.check() == []


def test_unused_multi_host_gateway_goes_only_with_the_option(env: Env) -> None:  # noqa: F811
    e = env
    e.ctx.config = dataclasses.replace(e.ctx.config, teardown_unused_network_gateway=True)
    [net] = N.list_networks(e.ctx)
    N.delete_network(e.ctx, uuid=net.uuid)
    N.create_networks(
        e.ctx, FLATDHCP, N.NetworkRequest(label="mh", fixed_range_v4="10.2.0.0/24", multi_host=True)
    )
    inst, _ = e.instance()
    e.agent.step()
    assert [a.cidr for a in e.links.addresses("br100")] != []
    assert e.runner.dump()
    I.deallocate_for_instance(e.ctx, inst)  # this host's last instance of the network
    e.agent.partial_sync()
    assert e.links.link("br100") is None and e.runner.dump() == {}
    assert e.agent.check() == []


def test_the_record_is_a_root_only_file_and_survives_a_restart() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h" / "bridges.json"
        rec = OwnedBridges(path)

        rec.save({"br100": Built(False, frozenset({"10.0.0.1/24"}))})
        assert path.stat().st_mode & 0o777 == 0o600
        assert OwnedBridges(path).load() == {"br100": Built(False, frozenset({"10.0.0.1/24"}))}
        path.write_text('{"br 1": {"nic": false, "addresses": []}, "br2": 3}')
        assert OwnedBridges(path).load() == {}  # malformed entries are ignored, not fatal
