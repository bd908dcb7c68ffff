"""Text of the VPN's files (pure): the server config, the client ``.ovpn``, the boot
bundle for a VPN run as a virtual machine.

The server runs OpenVPN in tap mode bridged to the project's VLAN (``server-bridge``):
clients get one of the top ``cnt_vpn_clients`` addresses of the subnet, which IPAM keeps
reserved, and sit on the project's layer 2 next to its instances.
"""

from __future__ import annotations

import base64
import io
import tarfile
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from novanet.domain.errors import InvalidInput

SERVER_PORT = 1194  # the DNAT of vpn_public_port leads here (host/nft/render.py)
CIPHERS = "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305"


@dataclass(frozen=True)
class ServerSpec:
    """What the server config of one project's VPN depends on."""

    project: str
    cidr: str
    vpn_address: str  # vpn_private_address: the server's own address in the subnet
    gateway: str  # the network's gateway, the appliance's default route
    pool_start: str
    pool_end: str
    tap: str = "tap0"

    @property
    def netmask(self) -> str:
        return str(IPv4Network(self.cidr).netmask)

    @property
    def prefixlen(self) -> int:
        return IPv4Network(self.cidr).prefixlen


def client_pool(cidr: str, count: int) -> tuple[str, str]:
    """The top ``count`` host addresses of ``cidr`` below its broadcast: the clients' range."""
    net = IPv4Network(cidr)
    if count < 1:
        raise InvalidInput(
            f"network {cidr} reserves no VPN client addresses (cnt_vpn_clients was 0 when it was made)"
        )
    if count > net.num_addresses - 5:
        raise InvalidInput(f"network {cidr} cannot hold {count} VPN client addresses")
    top = net.broadcast_address - 1
    return str(IPv4Address(int(top) - count + 1)), str(top)


def server_config(
    spec: ServerSpec,
    *,
    ca: str,
    cert: str,
    key: str,
    crl: str,
    pid_file: str | None = None,
    status_file: str | None = None,
) -> str:
    """The OpenVPN server config; ``ca``/``cert``/``key``/``crl`` are file paths."""
    net = IPv4Network(spec.cidr)
    lines = [
        "# novanet cloudpipe VPN of project " + spec.project,
        "mode server",
        "tls-server",
        "proto udp",
        f"port {SERVER_PORT}",
        f"dev {spec.tap}",
        "dev-type tap",
        f"ca {ca}",
        f"cert {cert}",
        f"key {key}",
        "dh none",
        # re-read by OpenVPN at every new connection: a revoked client is refused at once
        f"crl-verify {crl}",
        # only certificates with EKU clientAuth may connect
        "remote-cert-tls client",
        f"data-ciphers {CIPHERS}",
        "tls-version-min 1.2",
        f"server-bridge {spec.vpn_address} {spec.netmask} {spec.pool_start} {spec.pool_end}",
        f'push "route {net.network_address} {net.netmask} {spec.vpn_address} 1"',
        "keepalive 2 10",
        "persist-key",
        "persist-tun",
        "verb 3",
    ]
    if pid_file:
        lines.append(f"writepid {pid_file}")
    if status_file:
        lines.append(f"status {status_file} 5")
    return "\n".join(lines) + "\n"


def client_config(
    project: str,
    public_address: str,
    public_port: int,
    *,
    ca_pem: str,
    cert_pem: str,
    key_pem: str,
) -> str:
    """A ready ``.ovpn``: a stock ``openvpn --config`` connects with it alone."""
    return "\n".join(
        [
            f"# novanet cloudpipe VPN of project {project}",
            "client",
            "dev tap",
            "proto udp",
            f"remote {public_address} {public_port}",
            "nobind",
            "resolv-retry infinite",
            "persist-key",
            "remote-cert-tls server",
            f"verify-x509-name vpn-{project} name",
            f"data-ciphers {CIPHERS}",
            "tls-version-min 1.2",
            "verb 3",
            "<ca>",
            ca_pem.strip(),
            "</ca>",
            "<cert>",
            cert_pem.strip(),
            "</cert>",
            "<key>",
            key_pem.strip(),
            "</key>",
            "",
        ]
    )


def start_script(spec: ServerSpec) -> str:
    """The boot script of a VPN virtual machine: eth0 and the tap bridged, OpenVPN on."""
    return "\n".join(
        [
            "#!/bin/sh",
            "# novanet cloudpipe VPN appliance: bridge eth0 and the OpenVPN tap, then serve",
            "set -e",
            'cd "$(dirname "$0")"',
            f"openvpn --mktun --dev {spec.tap} --dev-type tap",
            "ip link add br0 type bridge",
            "ip link set eth0 master br0",
            f"ip link set {spec.tap} master br0",
            "ip addr flush dev eth0",
            f"ip addr add {spec.vpn_address}/{spec.prefixlen} dev br0",
            f"ip link set {spec.tap} up",
            "ip link set eth0 up",
            "ip link set br0 up",
            f"ip route replace default via {spec.gateway}",
            "exec openvpn --config server.conf",
            "",
        ]
    )


def bundle(spec: ServerSpec, *, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, crl_pem: bytes) -> bytes:
    """The boot bundle (tar.gz): server.conf, ca.pem, server.crt, server.key, crl.pem,
    start.sh, all relative to the directory it is unpacked in."""
    files = {
        "server.conf": (
            server_config(spec, ca="ca.pem", cert="server.crt", key="server.key", crl="crl.pem").encode(),
            0o644,
        ),
        "ca.pem": (ca_pem, 0o644),
        "server.crt": (cert_pem, 0o644),
        "server.key": (key_pem, 0o600),
        "crl.pem": (crl_pem, 0o644),
        "start.sh": (start_script(spec).encode(), 0o755),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"cloudpipe/{name}")
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def user_data(bundle_bytes: bytes) -> str:
    """A cloud-init / plain user-data shell script that unpacks the bundle and starts it."""
    payload = base64.encodebytes(bundle_bytes).decode()
    return (
        "#!/bin/sh\n"
        "# novanet cloudpipe VPN boot payload\n"
        "set -e\n"
        "mkdir -p /var/lib/cloudpipe && cd /var/lib/cloudpipe\n"
        "base64 -d > bundle.tar.gz <<'NOVANET_BUNDLE'\n"
        f"{payload}"
        "NOVANET_BUNDLE\n"
        "tar -xzf bundle.tar.gz\n"
        "chmod 600 cloudpipe/server.key\n"
        "exec sh cloudpipe/start.sh\n"
    )
