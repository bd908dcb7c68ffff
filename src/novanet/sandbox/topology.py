"""What a sandbox is made of: names, addresses and per-host configuration, computed
from the `sandbox up` options before anything is built."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from novanet.domain.errors import InvalidInput
from novanet.domain.modes import Mode, mode_from_name

NS_PREFIX = "nvsb-"
_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")

OUTSIDE_IP = "203.0.113.254"
PUBLIC_NET = "203.0.113.0/24"
FLOATING_RANGE = "203.0.113.64/27"
UNDERLAY_NET = "192.0.2.0/24"
FIXED_RANGE = "10.90.0.0/24"
VLAN_START = 100
VPN_PROJECT = "demo"  # VLAN mode: the project whose cloudpipe VPN the sandbox runs
VPN_USER = "demo"  # the user the sandbox writes a client config for
VPN_CLIENTS = 4  # cnt_vpn_clients: the top addresses of the subnet, for VPN clients
MAX_HOSTS = 8
MAX_INSTANCES = 16
MAX_QEMU = 4


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"sandbox name {name!r}: 1-12 lower-case letters and digits, a letter first")
    return name


@dataclass(frozen=True)
class Host:
    name: str  # novanet host name: net, c1, c2 ...
    ns: str
    public_ip: str
    underlay_ip: str
    compute: bool


@dataclass(frozen=True)
class Instance:
    name: str  # vm1, vm2 ...
    uuid: str
    host: str
    ns: str  # the instance's namespace (netns guest) or None-like "" for qemu
    project: str


@dataclass(frozen=True)
class Plan:
    name: str
    manager: str  # flat, flatdhcp, vlan
    multi_host: bool
    guest: str  # netns or qemu
    segmentation: str  # vlan (802.1Q) or vxlan, VLAN mode only
    hosts: tuple[Host, ...]
    instances: tuple[Instance, ...]

    @property
    def mode(self) -> Mode:
        return mode_from_name(self.manager)

    @property
    def outside_ns(self) -> str:
        return f"{NS_PREFIX}{self.name}-out"

    @property
    def underlay_ns(self) -> str:
        return f"{NS_PREFIX}{self.name}-und"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the sandbox, in the order they are made."""
        ns = [self.outside_ns, self.underlay_ns] + [h.ns for h in self.hosts]
        return ns + [i.ns for i in self.instances if i.ns]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            **{
                **data,
                "hosts": tuple(Host(**h) for h in data["hosts"]),
                "instances": tuple(Instance(**i) for i in data["instances"]),
            }
        )


def plan(
    name: str,
    manager: str,
    *,
    multi_host: bool,
    hosts: int,
    instances: int,
    guest: str,
    segmentation: str,
    uuids: list[str],
) -> Plan:
    check_name(name)
    mode = mode_from_name(manager)
    if not 1 <= hosts <= MAX_HOSTS:
        raise InvalidInput(f"--hosts {hosts}: 1 to {MAX_HOSTS} compute hosts")
    limit = MAX_QEMU if guest == "qemu" else MAX_INSTANCES
    if not 0 <= instances <= limit:
        raise InvalidInput(f"--instances {instances}: 0 to {limit} with --guest {guest}")
    if guest not in ("netns", "qemu"):
        raise InvalidInput(f"--guest {guest!r}: netns or qemu")
    if len(uuids) < instances:
        raise InvalidInput("not enough instance UUIDs")
    hs = [Host("net", f"{NS_PREFIX}{name}-net", "203.0.113.1", "192.0.2.1", compute=False)]
    for i in range(1, hosts + 1):
        hs.append(Host(f"c{i}", f"{NS_PREFIX}{name}-c{i}", f"203.0.113.{10 + i}", f"192.0.2.{10 + i}", True))
    computes = [h for h in hs if h.compute]
    inst = []
    for i in range(1, instances + 1):
        h = computes[(i - 1) % len(computes)]
        ns = f"{NS_PREFIX}{name}-vm{i}" if guest == "netns" else ""
        inst.append(Instance(f"vm{i}", uuids[i - 1], h.name, ns, "demo"))
    return Plan(name, mode.name, multi_host, guest, segmentation, tuple(hs), tuple(inst))


def host_config(p: Plan, h: Host, root: Path, db_url: str) -> str:
    """The nova.conf of one sandbox host (also used, as host `net`, for the control plane)."""
    mode = p.mode
    opts: dict[str, str] = {
        "network_manager": mode.class_path,
        "host": h.name,
        "network_host": "net",
        "my_ip": h.public_ip,
        "public_interface": "pub0",
        "state_path": str(root / "hosts" / h.name),
        "multi_host": str(p.multi_host),
        "force_dhcp_release": "True",
        "metadata_host": "",
        "flat_network_dns": OUTSIDE_IP,
        "report_interval": "2",
        "service_down_time": "10",
        "agent_resync_interval": "30",
    }
    if mode.vlan:
        opts["vlan_start"] = str(VLAN_START)
        # The cloudpipe VPN: client addresses reserved at network create, and one CA for
        # every host, so the host that serves the VPN reads what `vpn create` wrote.
        opts["cnt_vpn_clients"] = str(VPN_CLIENTS)
        opts["ca_path"] = str(root / "CA")
        if p.segmentation == "vxlan":
            opts.update(vlan_segmentation="vxlan", vxlan_interface="und0", vxlan_local_ip=h.underlay_ip)
        else:
            opts.update(vlan_segmentation="vlan", vlan_interface="und0")
    else:
        opts.update(flat_network_bridge="br100", flat_interface="und0")
        # The original's flat_injected defaults to False; the sandbox's Flat cloud
        # injects, as a Flat cloud of the original was configured to.
        opts["flat_injected"] = str(mode.injected_default)
    lines = ["# written by `novanet sandbox up`", "[DEFAULT]"]
    lines += [f"{k} = {v}" for k, v in opts.items()]
    lines += ["", "[database]", f"connection = {db_url}", ""]
    return "\n".join(lines)
