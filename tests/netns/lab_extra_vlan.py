"""Helpers of the Flat and VLAN agent tests: independent views of what the agent built
(``nft -j``, ``ip -j``, /proc) and a DHCP client that also reports which server answered.

Like hostlab, everything acts inside namespaces the test made.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hostlab import PYTHON, Lab, eventually, udhcpc
from nslab import Netns

T = TypeVar("T")

# udhcpc event script that records the whole lease, not only the address: which server
# answered (option 54), the router and the mask.
UDHCPC_ENV_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\nserverid=%s\\n' "$ip" "$mask" "$router" "$serverid" \\
      > "$LEASE_OUT" ;;
esac
exit 0
"""


def dhcp_lease(lab: Lab, vm: Netns, iface: str = "eth0", tries: int = 6) -> dict[str, str] | None:
    """Run busybox udhcpc once in ``vm``; the lease's fields, or None when no server answered."""
    script = lab.root / "udhcpc-env.sh"
    if not script.exists():
        script.write_text(UDHCPC_ENV_SCRIPT)
        script.chmod(0o755)
    out = lab.root / f"lease-env-{vm.name}-{iface}"
    udhcpc(vm, iface, tries, script, out)
    if not out.exists():
        return None
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


# --- nftables, read with nft itself -------------------------------------------------------


def nft_table(ns: Netns, family: str = "ip", table: str = "novanet") -> list[dict[str, Any]]:
    """The objects of one table (``nft -j list table``), without the metainfo entry."""
    data = json.loads(ns.run("nft", "-j", "list", "table", family, table))
    return [o for o in data["nftables"] if "metainfo" not in o]


def _obj(ns: Netns, kind: str, name: str, family: str) -> dict[str, Any]:
    for o in nft_table(ns, family):
        if kind in o and o[kind]["name"] == name:
            return o[kind]  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} {name} in table {family} novanet")


def _value(v: Any) -> Any:
    """An nft JSON element value as plain Python: '10.0.0.0/24', ('1.2.3.4', 1000), '1.2.3.4'."""
    if isinstance(v, dict):
        if "prefix" in v:
            return f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if "range" in v:
            return tuple(v["range"])
        if "concat" in v:
            return tuple(_value(x) for x in v["concat"])
        if "elem" in v:
            return _value(v["elem"]["val"])
    return v


def set_elements(ns: Netns, name: str, family: str = "ip") -> set[Any]:
    """The elements of a set (a map's keys too)."""
    obj = _obj(ns, "set", name, family) if _has(ns, "set", name, family) else _obj(ns, "map", name, family)
    out = set()
    for e in obj.get("elem", []):
        if isinstance(e, list):  # a map element: [key, value]
            out.add(_value(e[0]))
        else:
            out.add(_value(e))
    return out


def map_elements(ns: Netns, name: str, family: str = "ip") -> dict[Any, Any]:
    """The key -> value pairs of a map."""
    obj = _obj(ns, "map", name, family)
    return {_value(k): _value(v) for k, v in obj.get("elem", [])}


def _has(ns: Netns, kind: str, name: str, family: str) -> bool:
    return any(kind in o and o[kind]["name"] == name for o in nft_table(ns, family))


def counter_packets(ns: Netns, name: str, family: str = "ip") -> int:
    return int(_obj(ns, "counter", name, family)["packets"])


# --- links and processes ------------------------------------------------------------------


def ports_of(ns: Netns, bridge: str) -> set[str]:
    """Interfaces enslaved to ``bridge`` (ip -j link show master)."""
    return {i["ifname"] for i in json.loads(ns.run("ip", "-j", "link", "show", "master", bridge))}


def ipv4_of(ns: Netns, dev: str) -> set[str]:
    [info] = json.loads(ns.run("ip", "-j", "addr", "show", "dev", dev))
    return {f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"}


def _cmdline(pid: int | str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def dnsmasq_processes(lab: Lab) -> list[int]:
    """Every running dnsmasq process (helpers included) whose command line names a file of
    this lab, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(entry.name)
        ours = any(str(lab.root).encode() in a for a in argv)
        if argv and os.path.basename(argv[0]) == b"dnsmasq" and ours:
            pids.append(int(entry.name))
    return pids


def dnsmasq_servers(lab: Lab, state: str) -> dict[str, int]:
    """network uuid -> pid of the running dnsmasq whose pid file is that network's, for the
    lab config named ``state`` (``<root>/state-<state>/networks/<host>/<uuid>/pid``)."""
    out = {}
    for pid_file in sorted(lab.root.glob(f"state-{state}/networks/*/*/pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        argv = _cmdline(pid)
        if argv and os.path.basename(argv[0]) == b"dnsmasq" and f"--pid-file={pid_file}".encode() in argv:
            out[pid_file.parent.name] = pid
    return out


def plug_spy(host: Netns, spy: Netns, bridge: str, mac: str, host_if: str = "spyh0") -> None:
    """A namespace with eth0 on ``bridge`` of ``host`` (a plain veth, not a novanet VIF)."""
    host.run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", spy.name)
    spy.run("ip", "link", "set", "eth0", "address", mac)
    spy.run("ip", "link", "set", "eth0", "up")
    host.run("ip", "link", "set", host_if, "master", bridge)
    host.run("ip", "link", "set", host_if, "up")


def udp_listen(lab: Lab, ns: Netns, port: int) -> Path:
    """A UDP server in ``ns`` recording ``source-address payload`` of each datagram."""
    out = lab.root / f"udp-{ns.name}-{port}"
    out.write_text("")
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(('0.0.0.0', {port})); s.settimeout(120)\n"
        "while True:\n"
        "    data, peer = s.recvfrom(512)\n"
        f"    with open({str(out)!r}, 'a') as f:\n"
        "        f.write(peer[0] + ' ' + data.decode() + '\\n')\n"
    )
    proc = ns.popen(PYTHON, "-c", code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab.helpers.append(proc)  # ended by lab.close(), by its PID
    eventually(lambda: ns.ok("sh", "-c", f"ss -lun | grep -q ':{port} '"), 10, what=f"udp listener :{port}")
    return out


def udp_send(ns: Netns, address: str, port: int, payload: str) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.sendto({payload.encode()!r}, ({address!r}, {port}))\n"
    )
    ns.run(PYTHON, "-c", code)


def parallel(*calls: Callable[[], T]) -> list[T]:
    """Run independent slow steps (CLI calls: each pays ~1-2 s of start-up) side by side;
    the results in order, the first failure re-raised."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]
