"""Certificates of the cloudpipe VPN, checked with `cryptography` itself."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from novanet.config import Config
from novanet.domain.errors import InvalidInput
from novanet.vpn import certs


def _cfg(tmp_path: Path, **kw: object) -> Config:
    return Config(state_path=str(tmp_path), **kw)  # type: ignore[arg-type]


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_cloud_ca_server_and_client(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, vpn_cert_validity_days=30)
    p = certs.paths(cfg, "p1")
    assert p.ca_dir == tmp_path / "CA" and p.keys_dir == tmp_path / "CA" / "keys" / "p1"
    ca = certs.ensure_ca(cfg, p, "p1")
    server = certs.issue_server(cfg, p, "p1")
    client = certs.issue_client(cfg, p, "p1", "alice")

    assert _cn(ca) == "cloud-ca" and _cn(server) == "vpn-p1" and _cn(client) == "p1-alice"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    for leaf, eku in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        leaf.verify_directly_issued_by(ca)  # chain: signature and issuer name
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
        lku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
        assert lku.critical and lku.value.digital_signature and not lku.value.key_cert_sign
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
        assert leaf.signature_hash_algorithm is not None and leaf.signature_hash_algorithm.name == "sha256"
        life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(days=30) <= life <= dt.timedelta(days=30, minutes=6)
        assert certs.is_valid(leaf)
        assert not certs.is_valid(leaf, leaf.not_valid_after_utc + dt.timedelta(seconds=1))
    # private keys: 0600 files in 0700 directories
    for key in (p.ca_key, p.server_key, p.client_key("alice")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700, key.parent
    assert stat.S_IMODE(p.server_cert.stat().st_mode) == 0o644


def test_crl_lists_revoked_and_verifies(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    p = certs.paths(cfg, "p1")
    ca = certs.ensure_ca(cfg, p, "p1")
    empty = certs.load_crl(p.crl)
    assert empty.is_signature_valid(ca.public_key()) and len(empty) == 0
    client = certs.issue_client(cfg, p, "p1", "bob")
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    certs.write_crl(cfg, p, [(client.serial_number, when)])
    crl = certs.load_crl(p.crl)
    assert crl.is_signature_valid(ca.public_key())
    assert crl.issuer == ca.subject
    revoked = crl.get_revoked_certificate_by_serial_number(client.serial_number)
    assert revoked is not None and revoked.revocation_date_utc == when.replace(tzinfo=dt.UTC)
    assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC)
    # another CA's key does not verify it
    other = certs.paths(_cfg(tmp_path / "other"), "p1")
    other_ca = certs.ensure_ca(_cfg(tmp_path / "other"), other, "p1")
    assert not crl.is_signature_valid(other_ca.public_key())


def test_project_ca_is_per_project(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, use_project_ca=True)
    a, b = certs.paths(cfg, "pa"), certs.paths(cfg, "pb")
    assert a.ca_dir == tmp_path / "CA" / "projects" / "pa"
    ca_a, ca_b = certs.ensure_ca(cfg, a, "pa"), certs.ensure_ca(cfg, b, "pb")
    assert _cn(ca_a) == "project-ca-pa" and ca_a.subject != ca_b.subject
    client_a = certs.issue_client(cfg, a, "pa", "u")
    client_a.verify_directly_issued_by(ca_a)
    with pytest.raises((ValueError, TypeError)):
        client_a.verify_directly_issued_by(ca_b)


@pytest.mark.parametrize("name", ["../x", "a/b", "a;b", "$(id)", "", ".hidden", "a b", "x" * 65, "a..b"])
def test_unsafe_names_refused(tmp_path: Path, name: str) -> None:
    cfg = _cfg(tmp_path)
    p = certs.paths(cfg, "p1")
    with pytest.raises(InvalidInput):
        p.client_key(name)
    with pytest.raises(InvalidInput):
        certs.paths(cfg, name)
    assert not (tmp_path / "CA").exists()


def test_ca_file_options_stay_inside(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="leaves"):
        certs.paths(_cfg(tmp_path, key_file="../../etc/key.pem"), "p1")


def test_crl_is_signed_again_before_it_expires(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, vpn_crl_validity_days=10)
    p = certs.paths(cfg, "p1")
    ca = certs.ensure_ca(cfg, p, "p1")
    client = certs.issue_client(cfg, p, "p1", "bob")
    certs.write_crl(cfg, p, [(client.serial_number, dt.datetime(2026, 1, 1))])
    first = certs.load_crl(p.crl)
    assert not certs.refresh_crl(cfg, p)  # fresh
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    assert certs.refresh_crl(cfg, p, now=later)
    second = certs.load_crl(p.crl)
    assert second.is_signature_valid(ca.public_key())
    assert [r.serial_number for r in second] == [client.serial_number]
    assert second.next_update_utc is not None and first.next_update_utc is not None
    assert second.next_update_utc >= first.next_update_utc
