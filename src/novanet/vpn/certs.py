"""Certificates of the cloudpipe VPN, made with ``cryptography`` (no openssl command).

One certificate authority for the cloud (``use_project_ca = False``, the original's
default) or one per project, a server certificate per project's VPN (EKU serverAuth)
and a client certificate per user (EKU clientAuth, so it can never serve), plus the
CRL of each CA. Keys are ECDSA P-256, signatures SHA-256. Private keys are files of
mode 0600 in 0700 directories under ``ca_path``/``keys_path``; they are never logged
and never stored in the database.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from novanet.config import Config
from novanet.domain.errors import InvalidInput

# A user or project name becomes a file name: no path or shell characters.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
ORG = "novanet"


def safe_name(value: str, what: str) -> str:
    """``value`` if it is usable as a file name and a certificate CN, else InvalidInput."""
    if not _SAFE.match(value) or ".." in value:
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '.', '@' or '-' (no path characters)"
        )
    return value


@dataclass(frozen=True)
class Paths:
    """Where one project's VPN material lives."""

    ca_dir: Path  # the CA serving this project (the cloud CA or the project's)
    ca_cert: Path
    ca_key: Path
    crl: Path
    keys_dir: Path  # this project's server and user keys

    @property
    def server_cert(self) -> Path:
        return self.keys_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.keys_dir / "server.key"

    def client_cert(self, user: str) -> Path:
        return self.keys_dir / "users" / f"{safe_name(user, 'user name')}.crt"

    def client_key(self, user: str) -> Path:
        return self.keys_dir / "users" / f"{safe_name(user, 'user name')}.key"


def _inside(base: Path, rel: str, what: str) -> Path:
    p = (base / rel).resolve()
    if not p.is_relative_to(base.resolve()):
        raise InvalidInput(f"option {what} = {rel!r} leaves {base}")
    return p


def paths(cfg: Config, project: str) -> Paths:
    """The files of ``project``'s VPN under the configured ca_path and keys_path."""
    safe_name(project, "project id")
    ca_root = Path(cfg.effective_ca_path)
    ca_dir = ca_root / "projects" / project if cfg.use_project_ca else ca_root
    return Paths(
        ca_dir=ca_dir,
        ca_cert=_inside(ca_dir, cfg.ca_file, "ca_file"),
        ca_key=_inside(ca_dir, cfg.key_file, "key_file"),
        crl=_inside(ca_dir, cfg.crl_file, "crl_file"),
        keys_dir=Path(cfg.effective_keys_path) / project,
    )


# --- files -------------------------------------------------------------------------


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 file, atomically (a reader sees the old or the new file)."""
    _mkdir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Certificates and CRLs: world-readable is fine, written atomically."""
    _mkdir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{path} is not an EC private key")
    return key


def load_crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(path.read_bytes())


# --- building ------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(cn: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, cn[:64]),
        ]
    )


def ca_common_name(cfg: Config, project: str) -> str:
    return f"project-ca-{project}" if cfg.use_project_ca else "cloud-ca"


def server_common_name(project: str) -> str:
    return f"vpn-{project}"


def ensure_ca(cfg: Config, p: Paths, project: str) -> x509.Certificate:
    """The CA certificate, made (with its key and an empty CRL) when missing."""
    if p.ca_cert.exists() and p.ca_key.exists():
        return load_cert(p.ca_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(ca_common_name(cfg, project), "ca")
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=cfg.vpn_ca_validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(p.ca_key, key_pem(key))
    write_public(p.ca_cert, cert_pem(cert))
    write_crl(cfg, p, ())
    return cert


def _leaf(
    cfg: Config, p: Paths, cn: str, unit: str, eku: x509.ObjectIdentifier
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = load_cert(p.ca_cert)
    ca_key = load_key(p.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, unit))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=cfg.vpn_cert_validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue_server(cfg: Config, p: Paths, project: str) -> x509.Certificate:
    """A new server certificate and key for ``project``'s VPN (EKU serverAuth)."""
    cert, key = _leaf(cfg, p, server_common_name(project), "vpn", ExtendedKeyUsageOID.SERVER_AUTH)
    write_private(p.server_key, key_pem(key))
    write_public(p.server_cert, cert_pem(cert))
    return cert


def issue_client(cfg: Config, p: Paths, project: str, user: str) -> x509.Certificate:
    """A new client certificate and key for ``user`` of ``project`` (EKU clientAuth)."""
    safe_name(user, "user name")
    cert, key = _leaf(cfg, p, f"{project}-{user}", "user", ExtendedKeyUsageOID.CLIENT_AUTH)
    write_private(p.client_key(user), key_pem(key))
    write_public(p.client_cert(user), cert_pem(cert))
    return cert


def write_crl(
    cfg: Config, p: Paths, revoked: Iterable[tuple[int, dt.datetime]]
) -> x509.CertificateRevocationList:
    """Sign and write the CA's CRL listing ``revoked`` (serial, revocation time)."""
    ca_cert = load_cert(p.ca_cert)
    ca_key = load_key(p.ca_key)
    now = _now()
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=cfg.vpn_crl_validity_days))
    )
    for serial, when in sorted(set(revoked)):
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when)
            .build()
        )
    crl = b.sign(ca_key, hashes.SHA256())
    write_public(p.crl, crl.public_bytes(serialization.Encoding.PEM))
    return crl


def refresh_crl(cfg: Config, p: Paths, now: dt.datetime | None = None) -> bool:
    """Sign the CRL again, with the same entries, once half its validity has passed (an
    expired CRL makes OpenVPN refuse every client). False when it was fresh enough or
    this host does not hold the CA key."""
    if not p.ca_key.exists() or not p.crl.exists():
        return False
    crl = load_crl(p.crl)
    t = now or dt.datetime.now(dt.UTC)
    half = dt.timedelta(days=cfg.vpn_crl_validity_days) / 2
    if crl.next_update_utc is not None and crl.next_update_utc - t > half:
        return False
    write_crl(cfg, p, [(r.serial_number, r.revocation_date_utc) for r in crl])
    return True


def is_valid(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    """Within its validity period."""
    t = now or dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= t <= cert.not_valid_after_utc
