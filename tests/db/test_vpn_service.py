"""Cloudpipe use cases on SQLite and PostgreSQL: refusals change nothing, certificates are
recorded (never their keys), revocation is recorded and signed, and the agent's snapshot
gives the appliance to the network host only."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from lifecycle_support import Env, new_uuid, refused

from novanet.agent.snapshot import read_snapshot
from novanet.db.schema import vpn_certs, vpns
from novanet.domain.errors import Conflict, InvalidInput, NotFound
from novanet.domain.modes import VLAN
from novanet.host.desired import desired_state
from novanet.service import instances as I
from novanet.service import networks as N
from novanet.service import vpn as V
from novanet.vpn import certs


def test_vpn_use_cases(env: Env, tmp_path: Path) -> None:
    ctx = env.ctx(
        "vlan", state_path=str(tmp_path), cnt_vpn_clients=4, vpn_ip="127.0.0.1", network_host="net-host"
    )
    N.create_networks(ctx, VLAN, N.NetworkRequest(label="v", fixed_range_v4="10.60.0.0/16", num_networks=2))
    I.allocate_for_instance(ctx, VLAN, I.AllocateRequest(new_uuid(), "pa", "cmp1"))

    refused(env, NotFound, V.create, ctx, "nobody", match="no VLAN network")
    refused(env, InvalidInput, V.create, ctx, "../pa", match="invalid")
    refused(
        env, InvalidInput, V.create, env.ctx("flatdhcp", state_path=str(tmp_path)), "pa", match="VLAN manager"
    )
    refused(env, NotFound, V.client_config, ctx, "pa", "alice", match="vpn create")
    assert not (tmp_path / "CA").exists()

    V.create(ctx, "pa")
    V.create(ctx, "pa")  # idempotent: the same server certificate
    text = V.client_config(ctx, "pa", "alice")
    assert "remote 127.0.0.1 1000" in text
    refused(env, InvalidInput, V.client_config, ctx, "pa", "a/b", match="invalid user name")
    refused(env, NotFound, V.revoke, ctx, "pa", "bob", match="no unrevoked")
    with env.engine.connect() as conn:
        rows = conn.execute(sa.select(vpn_certs).order_by(vpn_certs.c.id)).all()
        assert [(r.project_id, r.user_name, r.ca, r.revoked_at) for r in rows] == [
            ("pa", None, "cloud-ca", None),
            ("pa", "alice", "cloud-ca", None),
        ]
        assert conn.execute(sa.select(vpns.c.project_id)).scalars().all() == ["pa"]
    dump = repr(env.dump())  # no key material in any table
    assert "PRIVATE KEY" not in dump and "BEGIN" not in dump

    assert V.revoke(ctx, "pa", "alice") == 1
    p = certs.paths(ctx.config, "pa")
    crl = certs.load_crl(p.crl)
    assert crl.is_signature_valid(certs.load_cert(p.ca_cert).public_key())
    assert crl.get_revoked_certificate_by_serial_number(int(rows[1].serial, 16)) is not None

    # The appliance lands on the network host only.
    with env.engine.connect() as conn:
        here = desired_state(read_snapshot(conn, "net-host", "127.0.0.1"), "net-host", ctx.config)
        there = desired_state(read_snapshot(conn, "cmp1", "127.0.0.1"), "cmp1", ctx.config)
    assert [(a.project, a.pool_start, a.pool_end) for a in here.appliances] == [
        ("pa", "10.60.0.251", "10.60.0.254")
    ]
    assert there.appliances == ()


def test_vpn_address_taken_by_a_cloudpipe_instance(env: Env, tmp_path: Path) -> None:
    ctx = env.ctx("vlan", state_path=str(tmp_path), cnt_vpn_clients=2)
    N.create_networks(ctx, VLAN, N.NetworkRequest(label="v", fixed_range_v4="10.61.0.0/24"))
    I.allocate_for_instance(ctx, VLAN, I.AllocateRequest(new_uuid(), "pa", "cmp1", vpn=True))
    refused(env, Conflict, V.create, ctx, "pa", match="held by instance")
