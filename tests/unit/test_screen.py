"""One bad row never stops a host: malformed values read from the database are screened
out (row by row, with the reason) and everything else converges."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa
from test_agent_loop import HOST, Env, env  # noqa: F401  (the agent fixture, fakes only)

from novanet.db.schema import floating_ips, hosts, networks, virtual_interfaces
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP
from novanet.host.desired import SnapFloating, Snapshot, SnapVif
from novanet.host.screen import screen
from novanet.service import networks as N

NET_UUID = "5b0c3b8e-7d7f-4c52-9a51-2f7c0f6b1a10"
VIF_UUID = "0d6f2a8e-1111-4c52-9a51-2f7c0f6b1a10"


def net(**kw: Any) -> Network:
    base: dict[str, Any] = dict(
        id=1, uuid=NET_UUID, label="private", injected=False, cidr="10.0.0.0/24", cidr_v6=None,
        multi_host=False, netmask="255.255.255.0", gateway="10.0.0.1", broadcast="10.0.0.255",
        dns1="8.8.4.4", dns2=None, dhcp_start="10.0.0.2", bridge="br100", bridge_interface=None,
        vlan=None, vpn_public_address=None, vpn_public_port=None, vpn_private_address=None,
        project_id=None, host=HOST, priority=None, rxtx_base=None, manager="flatdhcp",
    )  # fmt: skip
    base.update(kw)
    return Network(**base)


def vif(**kw: Any) -> SnapVif:
    base: dict[str, Any] = dict(
        uuid=VIF_UUID, mac="fa:16:3e:00:00:01", network_id=1, instance_uuid=VIF_UUID,
        instance_host=HOST, hostname="vm1", addresses=("10.0.0.3",),
    )  # fmt: skip
    base.update(kw)
    return SnapVif(**base)


def snap(n: Network | None = None, v: SnapVif | None = None, f: SnapFloating | None = None) -> Snapshot:
    s = Snapshot()
    s.networks = {1: n or net()}
    s.vifs = {VIF_UUID: v or vif()}
    floating = f or SnapFloating("203.0.113.5", "10.0.0.3", "pub0")
    s.floating = {floating.address: floating}
    return s


def test_a_clean_snapshot_passes_untouched() -> None:
    s = snap()
    clean, rejected = screen(s, HOST, None)
    assert rejected == ()
    assert clean.networks == s.networks and clean.vifs == s.vifs and clean.floating == s.floating


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bridge": "br 100"}, "invalid bridge name"),
        ({"bridge": "b" * 16}, "invalid bridge name"),
        ({"bridge": None}, "no bridge"),
        ({"bridge_interface": "eth0;x"}, "invalid bridge_interface name"),
        ({"cidr": "10.0.0.0/33"}, "not an IPv4 CIDR"),
        ({"cidr": " 10.0.0.0/24"}, "not an IPv4 CIDR"),
        ({"cidr": "10.0.0.1/24"}, "not an IPv4 CIDR"),
        ({"cidr": "127.0.0.0/24", "netmask": "255.255.255.0"}, "loopback"),
        ({"dns1": "8.8.8.8\n"}, "dns1 '8.8.8.8\\n' is not an IPv4 address"),
        ({"dns2": "127.0.0.1"}, "loopback"),
        ({"vlan": 0}, "vlan 0"),
        ({"vlan": 5000}, "vlan 5000"),
        ({"vlan": "abc"}, "vlan 'abc'"),
        ({"gateway": "10.9.0.1"}, "outside"),
        ({"netmask": "255.255.0.0"}, "does not match"),
        ({"uuid": "../../etc"}, "not a UUID"),
        ({"label": "a\nb"}, "control characters"),
        ({"vpn_public_port": 70000}, "vpn_public_port"),
    ],
)
def test_a_bad_network_is_left_out_with_the_reason(change: dict[str, Any], reason: str) -> None:
    clean, rejected = screen(snap(n=net(**change)), HOST, None)
    assert clean.networks == {} and clean.vifs == {}
    ((bad),) = rejected
    assert bad.kind == "network" and bad.ref == f"1 ({change.get('uuid', NET_UUID)})"
    assert reason in bad.reason, bad


def test_a_bad_network_another_host_serves_is_not_this_hosts_report() -> None:
    s = snap(n=net(bridge="br 1", host="other"), v=vif(instance_host="other"))
    clean, rejected = screen(s, HOST, None)
    assert clean.networks == {} and rejected == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mac": "fa:16:3e:00:00:0g"}, "not a lower-case MAC"),
        ({"mac": "FA:16:3E:00:00:01"}, "not a lower-case MAC"),
        ({"mac": "01:00:5e:00:00:01"}, "multicast"),
        ({"addresses": ("10.0.0.3\n",)}, "not an IPv4 address"),
        ({"addresses": ("10.9.0.3",)}, "outside"),
        ({"hostname": "vm,1"}, "DNS label"),
        ({"uuid": "x"}, "not a UUID"),
    ],
)
def test_a_bad_vif_is_left_out_and_its_network_stays(change: dict[str, Any], reason: str) -> None:
    clean, rejected = screen(snap(v=vif(**change)), HOST, None)
    assert set(clean.networks) == {1} and clean.vifs == {}
    ((bad),) = rejected
    assert bad.kind == "vif" and reason in bad.reason, bad


@pytest.mark.parametrize(
    ("f", "reason"),
    [
        (SnapFloating("203.0.113.5", "10.0.0.3", "pub 0"), "invalid interface name"),
        (SnapFloating("203.0.113.5", "10.0.0.3", "p" * 16), "invalid interface name"),
        (SnapFloating("203.0.113.5 ", "10.0.0.3", "pub0"), "not an IPv4 address"),
        (SnapFloating("224.0.0.5", "10.0.0.3", "pub0"), "multicast"),
        (SnapFloating("203.0.113.5", "10.0.0.300", "pub0"), "not an IPv4 address"),
    ],
)
def test_a_bad_floating_ip_is_left_out(f: SnapFloating, reason: str) -> None:
    clean, rejected = screen(snap(f=f), HOST, None)
    assert clean.floating == {} and set(clean.networks) == {1}
    ((bad),) = rejected
    assert bad.kind == "floating" and bad.ref == f.address and reason in bad.reason, bad


def test_a_bad_underlay_address_is_no_peer() -> None:
    s = snap()
    s.underlay = {"h1": "192.0.2.1", "h2": "192.0.2.300"}
    clean, rejected = screen(s, HOST, None)
    assert clean.underlay == {"h1": "192.0.2.1"}
    assert [str(r) for r in rejected] == ["host h2: underlay address '192.0.2.300' is not an IPv4 address"]


# --- the agent: everything else converges, `check` names the row -----------------------------


def _write(e: Env, table: sa.Table, where: Any, **values: Any) -> None:
    with e.ctx.engine.begin() as conn:
        conn.execute(table.update().where(where).values(**values))


def test_bad_rows_leave_the_rest_of_the_host_converged(env: Env) -> None:  # noqa: F811
    e = env
    [second] = N.create_networks(
        e.ctx, FLATDHCP, N.NetworkRequest(label="second", fixed_range_v4="10.1.0.0/24", bridge="br101")
    )
    _write(e, networks, networks.c.id == second.id, host=HOST)
    inst, _ = e.instance()  # a VIF on each of the two networks
    healthy, _ = e.instance()
    fip = e.floating(healthy)
    bad_fip = e.floating(inst)
    # Straight into the database, as a buggy writer or a hand edit would.
    _write(e, networks, networks.c.id == second.id, bridge="br 101;x")
    _write(e, floating_ips, floating_ips.c.address == bad_fip, interface="pub0\n")
    with e.ctx.engine.begin() as conn:
        vif_uuid = conn.execute(
            sa.select(virtual_interfaces.c.uuid).where(
                virtual_interfaces.c.instance_uuid == inst, virtual_interfaces.c.network_id != second.id
            )
        ).scalar_one()
        # this host's own row (a host's share holds its own and its peers' rows only)
        conn.execute(hosts.insert().values(name=HOST, underlay_address="not-an-ip"))
    _write(e, virtual_interfaces, virtual_interfaces.c.uuid == vif_uuid, address="fa:16:3e:zz:00:01")

    e.agent.step()
    assert not e.agent.needs_full, "the full sync failed"
    assert e.links.link("br100") is not None and e.links.link("br101") is None
    assert e.dnat() == {fip: dataclasses.asdict(e.agent.snap.floating[fip])["fixed_address"]}  # type: ignore[union-attr]
    assert e.bound() == {fip}
    assert len(e.runner.dump()) == 1  # dnsmasq of the healthy network only
    problems = e.agent.check()
    skipped = sorted(p for p in problems if p.startswith("database: "))
    assert skipped == sorted(
        [
            f"database: row skipped, floating {bad_fip}: invalid interface name 'pub0\\n': use 1-15"
            " characters of letters, digits, '_', '.', '-'",
            f"database: row skipped, host {HOST}: underlay address 'not-an-ip' is not an IPv4 address",
            f"database: row skipped, network {second.id} ({second.uuid}): invalid bridge name 'br 101;x':"
            " use 1-15 characters of letters, digits, '_', '.', '-'",
            f"database: row skipped, vif {vif_uuid}: MAC 'fa:16:3e:zz:00:01' is not a lower-case MAC",
        ]
    ), problems
    assert problems == skipped  # nothing else drifted
    metric = e.agent.metrics.rejected_rows
    assert {k: metric.labels(k)._value.get() for k in ("network", "vif", "floating", "host")} == {
        "network": 1,
        "vif": 1,
        "floating": 1,
        "host": 1,
    }

    # Reported, not "repaired": the periodic drift check starts no full sync for it.
    e.tick(120)
    e.agent.step()
    assert e.agent.metrics.drift_repairs._value.get() == 0

    # Fixed by hand in the database (no change logged): the periodic resync sees the
    # difference, and its full sync picks the row up; the report is gone.
    _write(e, networks, networks.c.id == second.id, bridge="br101")
    assert e.agent.missed()
    e.agent.full_sync()
    assert e.links.link("br101") is not None
    assert not [p for p in e.agent.check() if "network" in p]
