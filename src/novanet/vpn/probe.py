"""Is an OpenVPN server answering? Send the first packet of a handshake, wait for its reply.

A client opens with P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7): one byte opcode/key id,
its 8-byte session id, an empty ack array, packet id 0. A live server (without
tls-auth/tls-crypt, as novanet configures it) answers P_CONTROL_HARD_RESET_SERVER_V2
(opcode 8), echoing the session id in its ack. No state is left on the server beyond a
half-open session it drops on its own.
"""

from __future__ import annotations

import os
import socket
import struct

OP_HARD_RESET_CLIENT_V2 = 7
OP_HARD_RESET_SERVER_V2 = 8


def hello(session: bytes) -> bytes:
    """The client's opening packet."""
    return bytes([OP_HARD_RESET_CLIENT_V2 << 3]) + session + b"\x00" + struct.pack("!I", 0)


def is_server_reset(packet: bytes, session: bytes) -> bool:
    """Whether ``packet`` is a server's reset that acknowledges ``session``."""
    if len(packet) < 1 + 8 + 1 or packet[0] >> 3 != OP_HARD_RESET_SERVER_V2:
        return False
    acks = packet[9]
    if acks == 0:
        return True  # some versions ack later; the opcode alone says "OpenVPN server"
    # ack array: acks * 4-byte packet ids, then the remote (our) session id
    start = 10 + 4 * acks
    return packet[start : start + 8] == session


def probe(address: str, port: int, timeout: float = 1.0, attempts: int = 2) -> bool:
    """True when an OpenVPN server answers the handshake on udp ``address``:``port``."""
    for _ in range(attempts):
        session = os.urandom(8)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(hello(session), (address, port))
                data, _peer = s.recvfrom(2048)
            except OSError:  # timeout, ICMP port unreachable (ECONNREFUSED), no route
                continue
            if is_server_reset(data, session):
                return True
    return False
