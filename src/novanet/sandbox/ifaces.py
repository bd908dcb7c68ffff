"""Apply a Debian-style /etc/network/interfaces file (the `inet static` stanzas novanet
injects) to a network namespace guest: the commands `ifup -a` would run."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from novanet.domain.errors import InvalidInput


def parse(text: str) -> list[dict[str, str]]:
    """The static stanzas of ``auto`` interfaces: name, address, netmask, gateway."""
    auto: set[str] = set()
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "auto":
            auto.update(words[1:])
            cur = None
        elif words[0] == "iface":
            cur = None
            if len(words) >= 4 and words[2] == "inet" and words[3] == "static":
                cur = {"name": words[1]}
                stanzas.append(cur)
        elif cur is not None and len(words) >= 2:
            cur[words[0]] = words[1]
    return [s for s in stanzas if s["name"] in auto and "address" in s and "netmask" in s]


def commands(text: str) -> list[list[str]]:
    cmds: list[list[str]] = []
    for s in parse(text):
        try:
            net = IPv4Network(f"{IPv4Address(s['address'])}/{s['netmask']}", strict=False)
        except ValueError:
            raise InvalidInput(f"bad address or netmask for {s['name']} in the interfaces file") from None
        cmds.append(["ip", "link", "set", s["name"], "up"])
        cmds.append(["ip", "addr", "add", f"{s['address']}/{net.prefixlen}", "dev", s["name"]])
        if "gateway" in s:
            cmds.append(["ip", "route", "replace", "default", "via", str(IPv4Address(s["gateway"]))])
    return cmds
