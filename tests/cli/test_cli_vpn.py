"""`novanet vpn create / list / client-config / revoke / bundle`, and their refusals."""

from __future__ import annotations

import io
import re
import stat
import tarfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

INVALID, NOT_FOUND = 2, 3


@pytest.fixture
def vcli(make_cli: Any, tmp_path: Path) -> Any:
    state = tmp_path / "state"
    cli = make_cli("vlan", f"state_path={state}\ncnt_vpn_clients=4\nvpn_ip=127.0.0.1\n")
    cli.ok("network", "create", "--label", "v", "--fixed-range-v4", "10.30.0.0/16", "--num-networks", "2",
           "--network-size", "256", "--vlan", "300")  # fmt: skip
    cli.ok("instance", "allocate", str(uuidlib.uuid4()), "--project-id", "pa", "--host", "h1")
    return cli


def _block(text: str, tag: str) -> bytes:
    m = re.search(rf"<{tag}>\n(.*?)</{tag}>", text, re.S)
    assert m, tag
    return m.group(1).encode()


def test_create_list_config_revoke(vcli: Any, tmp_path: Path) -> None:
    res = vcli.ok("vpn", "create", "--project", "pa")
    assert res.out.startswith("VPN of project pa: 127.0.0.1:1000 -> 10.30.0.2 (10.30.0.0/24)")
    keys = tmp_path / "state" / "CA"
    assert stat.S_IMODE((keys / "private" / "cakey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "keys" / "pa" / "server.key").stat().st_mode) == 0o600
    # nothing listens on 127.0.0.1:1000: the probe says down
    [row] = vcli.json("vpn", "list")
    assert row["project_id"] == "pa" and row["state"] == "down"
    assert (row["internal_ip"], row["public_ip"], row["public_port"]) == ("10.30.0.2", "127.0.0.1", 1000)

    out = tmp_path / "pa-alice.ovpn"
    vcli.ok("vpn", "client-config", "--project", "pa", "--user", "alice", "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert "remote 127.0.0.1 1000" in text.splitlines() and "remote-cert-tls server" in text
    ca = x509.load_pem_x509_certificate(_block(text, "ca"))
    cert = x509.load_pem_x509_certificate(_block(text, "cert"))
    cert.verify_directly_issued_by(ca)
    assert b"PRIVATE KEY" in _block(text, "key")
    # the same user asking again gets the same certificate
    again = vcli.ok("vpn", "client-config", "--project", "pa", "--user", "alice").out
    assert x509.load_pem_x509_certificate(_block(again, "cert")).serial_number == cert.serial_number

    assert "revoked 1" in vcli.ok("vpn", "revoke", "--project", "pa", "--user", "alice").out
    crl = x509.load_pem_x509_crl((keys / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    # a new config after revocation is a new certificate, not on the CRL
    fresh = vcli.ok("vpn", "client-config", "--project", "pa", "--user", "alice").out
    new = x509.load_pem_x509_certificate(_block(fresh, "cert"))
    assert new.serial_number != cert.serial_number
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None

    bundle = tmp_path / "b.tgz"
    vcli.ok("vpn", "bundle", "--project", "pa", "--output", str(bundle))
    with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes())) as tar:
        assert "cloudpipe/server.key" in tar.getnames()


def test_refusals_change_nothing(vcli: Any, tmp_path: Path) -> None:
    vcli.ok("vpn", "create", "--project", "pa")
    before = sorted(p for p in (tmp_path / "state").rglob("*"))
    for args, code, match in [
        (["vpn", "create", "--project", "nope"], NOT_FOUND, "no VLAN network"),
        (["vpn", "client-config", "--project", "pa", "--user", "../../x"], INVALID, "invalid user name"),
        (["vpn", "client-config", "--project", "pa", "--user", "a;rm -rf"], INVALID, "invalid user name"),
        (["vpn", "client-config", "--project", "nope", "--user", "u"], NOT_FOUND, "no VLAN network"),
        (["vpn", "revoke", "--project", "pa", "--user", "ghost"], NOT_FOUND, "no unrevoked"),
        (["vpn", "bundle", "--project", "nope"], NOT_FOUND, "no VLAN network"),
        (["vpn", "change", "--project", "pa", "--ip", "198.51.100.1", "--port", "70000"], INVALID, "port"),
    ]:
        vcli.refused(*args, code=code, match=match)
    assert sorted(p for p in (tmp_path / "state").rglob("*")) == before


def test_non_vlan_manager_refused(make_cli: Any, tmp_path: Path) -> None:
    cli = make_cli("flatdhcp", f"state_path={tmp_path / 's'}\n")
    cli.refused("vpn", "create", "--project", "pa", code=INVALID, match="needs the VLAN manager")
    assert not (tmp_path / "s").exists()


def test_network_without_client_range_refused(make_cli: Any, tmp_path: Path) -> None:
    cli = make_cli("vlan", f"state_path={tmp_path / 's'}\n")  # cnt_vpn_clients = 0
    cli.ok("network", "create", "--label", "v", "--fixed-range-v4", "10.31.0.0/24")
    cli.ok("instance", "allocate", str(uuidlib.uuid4()), "--project-id", "pa", "--host", "h1")
    cli.refused("vpn", "create", "--project", "pa", code=INVALID, match="cnt_vpn_clients")
    assert not (tmp_path / "s" / "CA").exists()


def test_vpn_address_held_by_an_instance_refused(vcli: Any) -> None:
    vcli.ok("instance", "allocate", str(uuidlib.uuid4()), "--project-id", "pa", "--host", "h1", "--vpn")
    vcli.refused("vpn", "create", "--project", "pa", code=4, match="held by instance")


def test_expired_server_certificate_is_invalid(make_cli: Any, tmp_path: Path) -> None:
    cli = make_cli(
        "vlan",
        f"state_path={tmp_path / 's'}\ncnt_vpn_clients=2\nvpn_ip=127.0.0.1\nvpn_cert_validity_days=0\n",
    )
    cli.ok("network", "create", "--label", "v", "--fixed-range-v4", "10.32.0.0/24")
    cli.ok("instance", "allocate", str(uuidlib.uuid4()), "--project-id", "pa", "--host", "h1")
    cli.ok("vpn", "create", "--project", "pa")
    time.sleep(1.1)  # valid until the second it was made
    assert [r["state"] for r in cli.json("vpn", "list")] == ["invalid"]
