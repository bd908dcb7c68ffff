"""Host-scoped changes on both databases: an agent reads only the changes of its scope (its
host, the networks it carries), a change on another host costs it no snapshot read, and a
change in one of its networks touches only that network's objects.

Two agents (hosts hA and hB) run against one database with fake kernels (FakeLinks,
FakeNft, dnsmasq's FakeRunner); reads are counted by the agents' own metrics and by a
wrapper around ``read_snapshot``."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from novanet import config as C
from novanet.agent import snapshot as snapmod
from novanet.agent.loop import Agent, Realizers
from novanet.db.engine import create_engine
from novanet.db.migrate import sync
from novanet.db.schema import changes
from novanet.domain.models import Network
from novanet.domain.modes import FLATDHCP
from novanet.host.dnsmasq.realizer import DnsmasqManager, FakeRunner
from novanet.host.netlink.realizer import FakeLinks
from novanet.host.nft.realizer import FakeNft
from novanet.service import floating as F
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service.context import Ctx

Json = Any


class RecordingNft(FakeNft):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[Json]] = []

    def apply(self, commands: list[Json]) -> None:
        super().apply(commands)
        if commands:
            self.log.append(commands)


@dataclass
class Host:
    agent: Agent
    nft: RecordingNft
    reads: list[str]

    @property
    def snapshot_reads(self) -> float:
        return self.agent.metrics.snapshot_reads._value.get()

    @property
    def partial_reads(self) -> float:
        return self.agent.metrics.partial_reads._value.get()


@dataclass
class Cloud:
    ctx: Ctx
    a: Host
    b: Host
    net1: Network
    net2: Network

    def instance(self, host: str, net: Network) -> tuple[str, str]:
        u = str(uuid.uuid4())
        req = I.AllocateRequest(u, "p1", host, requested=(I.RequestedNetwork(net.uuid),))
        info = I.allocate_for_instance(self.ctx, FLATDHCP, req)
        return u, info[0]["network"]["subnets"][0]["ips"][0]["address"]


_OPTS = {
    "network_manager": "flatdhcp",
    "flat_network_bridge": "br100",
    "public_interface": "pub0",
    "my_ip": "203.0.113.1",
    "multi_host": "True",
    "metadata_host": "",
}


@pytest.fixture
def cloud(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="novanet-scope-"))
    root.chmod(0o755)
    engine = create_engine(db_url)
    sync(engine)
    cfg = C.load(overrides={**_OPTS, "connection": db_url, "state_path": str(root)})
    ctx = Ctx(engine, cfg)
    [net1] = N.create_networks(
        ctx, FLATDHCP, N.NetworkRequest(label="one", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    [net2] = N.create_networks(
        ctx, FLATDHCP, N.NetworkRequest(label="two", fixed_range_v4="10.0.1.0/24", bridge="br101")
    )
    F.create_pool(ctx, "203.0.113.16/28", interface="pub0")
    reads: dict[str, list[str]] = {"hA": [], "hB": []}
    real_read = snapmod.read_snapshot

    def counting_read(conn: sa.Connection, host: str, vpn_ip: str | None = None) -> Any:
        reads[host].append(host)
        return real_read(conn, host, vpn_ip)

    monkeypatch.setattr(snapmod, "read_snapshot", counting_read)

    def host(name: str) -> Host:
        links = FakeLinks()
        links.add_nic("pub0")
        nft = RecordingNft()
        dhcp = DnsmasqManager(root / name / "networks", name, ["/bin/true"], FakeRunner())
        return Host(Agent(ctx, name, Realizers(links, nft, dhcp, forwarding=lambda: None)), nft, reads[name])

    try:
        yield Cloud(ctx, host("hA"), host("hB"), net1, net2)
    finally:
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


def _started(c: Cloud) -> None:
    c.instance("hA", c.net1)
    c.instance("hA", c.net2)
    c.instance("hB", c.net1)
    for h in (c.a, c.b):
        h.agent.step()
        assert h.agent.check() == []
        h.nft.log.clear()
        h.reads.clear()


def _scope_rows(c: Cloud, after: int) -> list[tuple[str, str | None, int | None]]:
    with c.ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(changes.c.kind, changes.c.host, changes.c.network_id).where(changes.c.id > after)
        )
        return [(r.kind, r.host, r.network_id) for r in rows]


def _newest(c: Cloud) -> int:
    with c.ctx.engine.connect() as conn:
        return snapmod.latest_change(conn)


def test_a_change_on_another_host_costs_no_snapshot_read(cloud: Cloud) -> None:
    c = cloud
    _started(c)
    reads, partial = c.a.snapshot_reads, c.a.partial_reads
    base = _newest(c)
    # hB's second instance in a network both hosts carry: hB is already a peer there
    inst, _ = c.instance("hB", c.net1)
    address = F.allocate(c.ctx, "p1")["address"]
    F.associate(c.ctx, address, inst)
    assert {h for _, h, _ in _scope_rows(c, base)} == {"hB"}  # scoped to hB alone
    assert c.a.agent.partial_sync() is False  # nothing of hA's scope
    assert (c.a.snapshot_reads, c.a.partial_reads, c.a.reads) == (reads, partial, [])
    assert c.a.nft.log == []
    assert c.a.agent.last_change == _newest(c)  # hB's ids are known to be hB's, no holes
    # hB applies its own changes, without reading its whole share either
    b_reads = c.b.snapshot_reads
    assert c.b.agent.partial_sync() is True
    assert c.b.snapshot_reads == b_reads and c.b.reads == []
    assert c.b.agent.check() == [] and c.a.agent.check() == []


def test_a_change_in_a_network_touches_only_that_networks_objects(cloud: Cloud) -> None:
    c = cloud
    _started(c)
    before = c.a.agent.applied
    assert before is not None
    dhcp_before = {d.network_uuid: d for d in before.dhcp}
    reads = c.a.snapshot_reads
    inst, address = c.instance("hA", c.net2)
    assert c.a.agent.partial_sync() is True
    assert c.a.snapshot_reads == reads and c.a.reads == []  # just the instance re-read
    [tx] = c.a.nft.log
    # only element edits, and every element is the new VIF's (its port, MAC, address)
    vif = next(v for v in c.a.agent.applied.vifs if address in v.addresses)  # type: ignore[union-attr]
    for cmd in tx:
        ((verb, obj),) = cmd.items()
        assert verb == "add" and list(obj) == ["element"], cmd
        text = json.dumps(obj["element"]["elem"])
        assert any(k in text for k in (vif.port, vif.mac, address)), cmd
    after = {d.network_uuid: d for d in c.a.agent.applied.dhcp}  # type: ignore[union-attr]
    assert after[c.net1.uuid] == dhcp_before[c.net1.uuid]  # net1's reservations untouched
    assert len(after[c.net2.uuid].hosts) == len(dhcp_before[c.net2.uuid].hosts) + 1
    assert c.a.agent.check() == []
    # and hB, which carries net1 only, heard nothing of it
    assert c.b.agent.partial_sync() is False and c.b.reads == []

    # deallocation: the same instance's elements go, nothing else
    c.a.nft.log.clear()
    reads = c.a.snapshot_reads  # check() above read the snapshot (as `agent check` does)
    I.deallocate_for_instance(c.ctx, inst)
    assert c.a.agent.partial_sync() is True
    assert c.a.snapshot_reads == reads
    [tx] = c.a.nft.log
    for cmd in tx:
        ((verb, obj),) = cmd.items()
        assert verb == "delete" and list(obj) == ["element"], cmd
        assert any(k in json.dumps(obj) for k in (vif.port, vif.mac, address)), cmd
    assert c.a.agent.check() == []


def test_a_hosts_first_instance_in_a_network_reaches_the_networks_hosts(cloud: Cloud) -> None:
    c = cloud
    _started(c)
    base = _newest(c)
    c.instance("hB", c.net2)  # hB joins net2: hA, which carries net2, gains a peer
    rows = _scope_rows(c, base)
    assert ("instance", "hB", None) in rows and ("instance", None, c.net2.id) in rows
    reads = c.a.snapshot_reads
    assert c.a.agent.partial_sync() is True
    assert c.a.snapshot_reads == reads  # the instance is re-read, not the snapshot
    assert c.a.agent.check() == []
    assert c.b.agent.partial_sync() is True and c.b.agent.check() == []


def test_a_new_network_concerns_no_host_until_it_has_one(cloud: Cloud) -> None:
    c = cloud
    _started(c)
    base = _newest(c)
    [net3] = N.create_networks(
        c.ctx, FLATDHCP, N.NetworkRequest(label="three", fixed_range_v4="10.0.2.0/24", bridge="br102")
    )
    assert _scope_rows(c, base) == [("network", None, net3.id)]
    assert c.a.agent.partial_sync() is False and c.b.agent.partial_sync() is False
    N.modify_network(c.ctx, net3.uuid, host="hA")  # now hA is its host
    assert c.b.agent.partial_sync() is False
    reads = c.a.snapshot_reads
    assert c.a.agent.partial_sync() is True
    assert c.a.snapshot_reads == reads + 1  # a network change: hA's own share is read
    assert c.a.agent.snap is not None and net3.id in c.a.agent.snap.networks


def test_postgresql_wakes_only_the_agents_a_change_concerns(cloud: Cloud) -> None:
    """PostgreSQL: hA LISTENs on its own channels; a change on hB does not wake it, one on
    hA does. SQLite has no channels: any commit wakes the poller (documented)."""
    import threading
    import time

    from novanet.agent.main import ChangeWaiter

    c = cloud
    _started(c)
    stop = threading.Event()
    waiter = ChangeWaiter(c.ctx, stop, c.a.agent.channels)
    try:
        waiter.wait(0.05)  # subscribes (PostgreSQL) / takes the file signature (SQLite)
        waiter.wait(0.05)

        def woken_by(host: str) -> float:
            timer = threading.Timer(0.3, lambda: c.instance(host, c.net1))
            timer.start()
            t = time.monotonic()
            waiter.wait(3.0)
            timer.join()
            return time.monotonic() - t

        if c.ctx.is_postgres:
            # the waiter returns at least once a second (its poll), never sooner for hB
            assert woken_by("hB") >= 0.9
            assert woken_by("hA") < 0.9
        else:
            assert woken_by("hB") < 2.0
    finally:
        waiter.close()


def test_a_peer_joining_a_vlan_network_reaches_its_other_hosts_without_a_snapshot_read(cloud: Cloud) -> None:
    """hB's first instance in a multi-host VLAN network hA carries: hA is told (the change
    is scoped to the network) and re-reads that network's peers, not its snapshot."""
    from novanet.domain.modes import VLAN

    c = cloud
    _started(c)
    vctx = Ctx(c.ctx.engine, C.load(overrides={**_OPTS, "network_manager": "vlan", "vlan_start": "300"}))
    [vnet] = N.create_networks(
        vctx,
        VLAN,
        N.NetworkRequest(
            label="v", fixed_range_v4="10.9.0.0/24", network_size=256, multi_host=True, project_id="p1"
        ),
    )

    def vlan_instance(host: str) -> None:
        req = I.AllocateRequest(str(uuid.uuid4()), "p1", host, requested=(I.RequestedNetwork(vnet.uuid),))
        I.allocate_for_instance(vctx, VLAN, req)

    vlan_instance("hA")
    c.a.agent.partial_sync()  # a network new to hA: its share is read again
    assert c.a.agent.snap is not None and c.a.agent.snap.network_hosts.get(vnet.id) == {"hA"}
    reads = c.a.snapshot_reads
    vlan_instance("hB")
    assert c.a.agent.partial_sync() is True
    assert c.a.snapshot_reads == reads
    assert c.a.agent.snap.network_hosts.get(vnet.id) == {"hA", "hB"}
    assert (vnet.id, "hB") in c.a.agent.snap.host_addresses  # its gateway: a VXLAN peer
