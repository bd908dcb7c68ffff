"""Server config, client .ovpn, boot bundle and the handshake probe's packets."""

from __future__ import annotations

import io
import socket
import tarfile
import threading

import pytest

from novanet.domain.errors import InvalidInput
from novanet.vpn import probe, render

SPEC = render.ServerSpec(
    project="p1",
    cidr="10.1.0.0/24",
    vpn_address="10.1.0.2",
    gateway="10.1.0.1",
    pool_start="10.1.0.251",
    pool_end="10.1.0.254",
)


def _lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x and not x.startswith("#")]


def test_client_pool_is_top_of_subnet() -> None:
    assert render.client_pool("10.1.0.0/24", 4) == ("10.1.0.251", "10.1.0.254")
    assert render.client_pool("10.2.0.0/28", 1) == ("10.2.0.14", "10.2.0.14")
    with pytest.raises(InvalidInput, match="cnt_vpn_clients"):
        render.client_pool("10.1.0.0/24", 0)
    with pytest.raises(InvalidInput):
        render.client_pool("10.2.0.0/29", 4)


def test_server_config() -> None:
    text = render.server_config(SPEC, ca="/c/ca.pem", cert="/k/s.crt", key="/k/s.key", crl="/c/crl.pem")
    lines = _lines(text)
    for want in (
        "mode server",
        "tls-server",
        "proto udp",
        "port 1194",
        "dev tap0",
        "dev-type tap",
        "ca /c/ca.pem",
        "cert /k/s.crt",
        "key /k/s.key",
        "crl-verify /c/crl.pem",
        "remote-cert-tls client",
        "server-bridge 10.1.0.2 255.255.255.0 10.1.0.251 10.1.0.254",
        'push "route 10.1.0.0 255.255.255.0 10.1.0.2 1"',
    ):
        assert want in lines, want
    assert not any(x.startswith(("tls-auth", "tls-crypt", "server ")) for x in lines)


def test_client_config_embeds_material() -> None:
    text = render.client_config("p1", "203.0.113.5", 1000, ca_pem="CA\n", cert_pem="CERT\n", key_pem="KEY\n")
    lines = _lines(text)
    for want in ("client", "dev tap", "proto udp", "remote 203.0.113.5 1000", "remote-cert-tls server"):
        assert want in lines, want
    assert "verify-x509-name vpn-p1 name" in lines
    assert "<ca>\nCA\n</ca>" in text and "<cert>\nCERT\n</cert>" in text and "<key>\nKEY\n</key>" in text


def test_bundle_holds_relative_config_and_start_script() -> None:
    data = render.bundle(SPEC, ca_pem=b"CA", cert_pem=b"CERT", key_pem=b"KEY", crl_pem=b"CRL")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {
            f"cloudpipe/{n}"
            for n in ("server.conf", "ca.pem", "server.crt", "server.key", "crl.pem", "start.sh")
        }
        assert members["cloudpipe/server.key"].mode == 0o600
        conf = tar.extractfile("cloudpipe/server.conf").read().decode()  # type: ignore[union-attr]
        start = tar.extractfile("cloudpipe/start.sh").read().decode()  # type: ignore[union-attr]
    assert "ca ca.pem" in conf and "crl-verify crl.pem" in conf
    assert "ip addr add 10.1.0.2/24 dev br0" in start and "ip route replace default via 10.1.0.1" in start
    script = render.user_data(data)
    assert script.startswith("#!/bin/sh\n") and "base64 -d" in script


def test_probe_packets() -> None:
    session = bytes(range(8))
    hello = probe.hello(session)
    assert hello[0] == 7 << 3 and hello[1:9] == session and len(hello) == 14
    server_session = b"S" * 8
    reply = bytes([8 << 3]) + server_session + bytes([1]) + (0).to_bytes(4, "big") + session + b"\0\0\0\0"
    assert probe.is_server_reset(reply, session)
    assert not probe.is_server_reset(reply, b"X" * 8)
    assert not probe.is_server_reset(hello, session)
    assert not probe.is_server_reset(b"", session)


def test_probe_against_a_fake_server_and_silence() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]

        def answer() -> None:
            data, peer = srv.recvfrom(2048)
            session = data[1:9]
            srv.sendto(bytes([8 << 3]) + b"S" * 8 + b"\x01\0\0\0\0" + session + b"\0\0\0\0", peer)

        t = threading.Thread(target=answer)
        t.start()
        assert probe.probe("127.0.0.1", port, timeout=2.0)
        t.join()
        # the socket is open but never answers: down
        assert not probe.probe("127.0.0.1", port, timeout=0.2, attempts=1)
