"""Raw frames an attacker inside an instance (or on the public network) would send, and a
sniffer for the victim's side. Run as a script inside a namespace the test made:

    python rawframes.py dhcp-server IFACE SRC_MAC SRC_IP SPORT MARKER
    python rawframes.py dhcp-client IFACE SRC_MAC SRC_IP DST_MAC DST_IP TYPE CHADDR ADDR SERVER CLIENT
    python rawframes.py arp-reply IFACE SRC_MAC SENDER_IP
    python rawframes.py ra IFACE SRC_MAC PREFIX
    python rawframes.py marker IFACE SRC_MAC MARKER      (a harmless broadcast carrying MARKER)
    python rawframes.py vxlan DST_IP PORT VNI INNER_SRC_MAC SENDER_IP MARKER
    python rawframes.py sniff IFACE SECONDS MARKER      (prints the number of frames seen)

AF_PACKET and UDP sockets only; no third-party packet library.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import time

BROADCAST = b"\xff" * 6
ETH_P_ALL = 0x0003
EXPERIMENTAL = 0x88B5  # IEEE local experimental ethertype: a frame that carries the marker


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp_len = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + udp


def bootp(op: int, chaddr: bytes, ciaddr: str, options: bytes, sname: bytes = b"") -> bytes:
    head = struct.pack("!BBBB", op, 1, 6, 0) + b"\x12\x34\x56\x78" + struct.pack("!HH", 0, 0)
    head += socket.inet_aton(ciaddr) + b"\0" * 12  # ciaddr, yiaddr, siaddr, giaddr
    head += chaddr + b"\0" * 10 + sname.ljust(64, b"\0")[:64] + b"\0" * 128
    return head + b"\x63\x82\x53\x63" + options + b"\xff"


def send_frame(iface: str, frame: bytes) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for _ in range(3):  # a few copies: nothing depends on one frame getting through
        s.send(frame)
        time.sleep(0.05)
    s.close()


def arp_reply(src_mac: bytes, sender_ip: str, dst_mac: bytes = BROADCAST) -> bytes:
    """Unsolicited "sender_ip is at src_mac" (a gratuitous reply), as a poisoner sends it."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + src_mac + socket.inet_aton(sender_ip)
    arp += dst_mac + socket.inet_aton(sender_ip)
    return dst_mac + src_mac + b"\x08\x06" + arp


def marker_frame(src_mac: bytes, marker: str) -> bytes:
    return BROADCAST + src_mac + struct.pack("!H", EXPERIMENTAL) + marker.encode().ljust(46, b"\0")


def router_advertisement(src_mac: bytes, prefix: str) -> bytes:
    net = ipaddress.IPv6Network(prefix)
    src = ipaddress.IPv6Address("fe80::bad:1")
    dst = ipaddress.IPv6Address("ff02::1")
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)  # lifetime 1800 s: a default router
    ra += struct.pack("!BB", 1, 1) + src_mac  # source link-layer address
    ra += struct.pack("!BBBBIII", 3, 4, net.prefixlen, 0xC0, 86400, 14400, 0) + net.network_address.packed
    pseudo = src.packed + dst.packed + struct.pack("!I", len(ra)) + b"\0\0\0\x3a"
    ra = ra[:2] + struct.pack("!H", checksum(pseudo + ra)) + ra[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(ra), 58, 255) + src.packed + dst.packed
    return b"\x33\x33\x00\x00\x00\x01" + src_mac + b"\x86\xdd" + ip6 + ra


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "dhcp-server":
        iface, src_mac, src_ip, sport, marker = args
        opts = bytes([53, 1, 2, 54, 4]) + socket.inet_aton(src_ip)  # OFFER from "src_ip"
        opts += bytes([3, 4]) + socket.inet_aton(src_ip) + bytes([6, 4]) + socket.inet_aton(src_ip)
        payload = bootp(2, BROADCAST, "0.0.0.0", opts, marker.encode())
        frame = (
            BROADCAST
            + mac(src_mac)
            + b"\x08\x00"
            + ipv4_udp(src_ip, "255.255.255.255", int(sport), 68, payload)
        )
        send_frame(iface, frame)
    elif cmd == "dhcp-client":
        iface, src_mac, src_ip, dst_mac, dst_ip, kind, chaddr, addr, server, client = args
        msg = {"release": 7, "decline": 4}[kind]
        opts = bytes([53, 1, msg, 54, 4]) + socket.inet_aton(server)
        opts += bytes([61, 7, 1]) + mac(client)  # client identifier (udhcpc sends 01 + its MAC)
        if kind == "decline":
            opts += bytes([50, 4]) + socket.inet_aton(addr)
        ciaddr = addr if kind == "release" else "0.0.0.0"
        payload = bootp(1, mac(chaddr), ciaddr, opts)
        frame = mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ipv4_udp(src_ip, dst_ip, 68, 67, payload)
        send_frame(iface, frame)
    elif cmd == "arp-reply":
        iface, src_mac, sender_ip = args
        send_frame(iface, arp_reply(mac(src_mac), sender_ip))
    elif cmd == "marker":
        iface, src_mac, marker = args
        send_frame(iface, marker_frame(mac(src_mac), marker))
    elif cmd == "ra":
        iface, src_mac, prefix = args
        send_frame(iface, router_advertisement(mac(src_mac), prefix))
    elif cmd == "vxlan":
        dst, port, vni, inner_mac, sender_ip, marker = args
        header = struct.pack("!II", 0x08000000, int(vni) << 8)
        frames = [
            arp_reply(mac(inner_mac), sender_ip),
            marker_frame(mac(inner_mac), marker),
        ]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            for f in frames:
                s.sendto(header + f, (dst, int(port)))
            time.sleep(0.05)
    elif cmd == "sniff":
        iface, seconds, marker = args
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((iface, 0))
        s.settimeout(0.2)
        print("ready", flush=True)
        seen, deadline = 0, time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            try:
                data = s.recv(65535)
            except TimeoutError:
                continue
            if marker.encode() in data:
                seen += 1
        print(seen, flush=True)
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
