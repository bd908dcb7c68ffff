"""What one dnsmasq is told, as pure data: its argument list and the files it reads.

Nothing here touches the disk or a process; ``novanet.host.dnsmasq.realizer`` writes these files
and runs dnsmasq. Facts about dnsmasq 2.90 this relies on (checked against its manual
and by the netns tests):

- ``--dhcp-hostsdir``: new or changed files are read at once (inotify on close-write and
  rename-into-the-directory), so adding a host needs no signal. Entries of a deleted or
  changed file stay until SIGHUP; files whose names start with ``.`` are ignored (we
  write ``.<name>.tmp`` and rename it into place).
- ``--dhcp-optsfile`` is read at start and on SIGHUP only.
- ``--leasefile-ro``: no lease file; the ``--dhcp-script`` is called once with ``init`` at
  start and must print the lease database (the database is the source of truth); it then
  gets ``add``/``old``/``del`` for every lease change, an ``old`` for every lease on
  SIGHUP, and a failing ``init`` makes dnsmasq refuse to start.
- ``--port=0``: DNS is off, so guests get exactly the DNS servers of their network
  (DHCP option 6 from the opts file) and no resolver listens on tenant bridges.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from novanet.domain import names
from novanet.domain.errors import InvalidInput
from novanet.domain.mac import normalize_mac
from novanet.host.model import DhcpHost, DhcpServer

HOSTS_DIR = "hosts.d"
OPTS_FILE = "opts"
PID_FILE = "pid"
SCRIPT_FILE = "dhcpbridge"
SPOOL_DIR = "lease-events"  # dnsmasq's add/del, waiting for the database (0700)
SPOOL_LOG = "lease-events.log"  # what the background drainer has to say
# Present while dnsmasq still holds host or option entries we removed or changed on disk:
# the SIGHUP that drops them is owed even if the agent dies before sending it.
RELOAD_MARK = "reload-pending"

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
# A dhcp-host field dnsmasq would read as a lease time or a keyword rather than a name.
_NOT_A_NAME = re.compile(r"^(\d+[smhdw]?|infinite|ignore)$", re.IGNORECASE)


@dataclass(frozen=True)
class NetworkPaths:
    """Where the files of one network's dnsmasq live: ``<networks_path>/<host>/<uuid>/``."""

    root: Path

    @classmethod
    def of(cls, networks_path: str | Path, host: str, network_uuid: str) -> NetworkPaths:
        uuid = names.network_uuid(network_uuid)
        return cls(Path(networks_path).absolute() / names.host_name(host) / uuid)

    @property
    def hosts_dir(self) -> Path:
        return self.root / HOSTS_DIR

    @property
    def opts(self) -> Path:
        return self.root / OPTS_FILE

    @property
    def pid(self) -> Path:
        return self.root / PID_FILE

    @property
    def script(self) -> Path:
        return self.root / SCRIPT_FILE

    @property
    def spool(self) -> Path:
        return self.root / SPOOL_DIR

    @property
    def spool_log(self) -> Path:
        return self.root / SPOOL_LOG

    @property
    def reload_mark(self) -> Path:
        return self.root / RELOAD_MARK


@dataclass(frozen=True)
class DnsmasqOptions:
    """Host-wide settings of every dnsmasq the agent runs."""

    config_file: str = ""  # dnsmasq_config_file; empty: read no config file at all
    binary: str = "dnsmasq"
    log_facility: str | None = None  # None: syslog (dnsmasq's default); a path: that file
    log_dhcp: bool = False


def tag(server: DhcpServer) -> str:
    """The dnsmasq tag of the network's range and options (the uuid: labels may hold commas)."""
    return names.network_uuid(server.network_uuid)


def subnet(server: DhcpServer) -> IPv4Network:
    return IPv4Network(f"{server.listen_address}/{server.netmask}", strict=False)


def _ipv4(value: str, what: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: expected an IPv4 address") from None


def _check_server(server: DhcpServer) -> IPv4Network:
    """Validate the network-wide fields; returns the subnet."""
    if server.network_uuid != names.network_uuid(server.network_uuid):
        raise InvalidInput(f"network uuid {server.network_uuid!r} is not in canonical form")
    names.interface_name(server.bridge, "bridge")
    listen = _ipv4(server.listen_address, "DHCP listen address")
    try:
        net = IPv4Network(f"{listen}/{server.netmask}", strict=False)
    except ValueError:
        raise InvalidInput(f"invalid netmask {server.netmask!r}") from None
    if str(net.netmask) != server.netmask:
        raise InvalidInput(f"invalid netmask {server.netmask!r}: use dotted form such as {net.netmask}")
    if _ipv4(server.dhcp_start, "DHCP start address") not in net:
        raise InvalidInput(f"DHCP start {server.dhcp_start} is outside {net}")
    if server.router is not None:
        _ipv4(server.router, "router address")
    for dns in server.dns_servers:
        _ipv4(dns, "DNS server address")
    if server.domain and not _DOMAIN.match(server.domain):
        raise InvalidInput(f"invalid DHCP domain {server.domain!r}")
    if server.lease_time < 1:
        raise InvalidInput(f"invalid DHCP lease time {server.lease_time}: must be positive")
    if server.mtu is not None and not 68 <= server.mtu <= 65535:
        raise InvalidInput(f"invalid MTU {server.mtu}: must be 68-65535")
    return net


def _check_host(h: DhcpHost, net: IPv4Network) -> None:
    if normalize_mac(h.mac) != h.mac:
        raise InvalidInput(f"invalid MAC {h.mac!r}: use lower-case colon form")
    names.dns_hostname(h.hostname)
    if _ipv4(h.address, "host address") not in net:
        raise InvalidInput(f"host address {h.address} of {h.mac} is outside {net}")


def validate(server: DhcpServer) -> DhcpServer:
    """Refuse anything that would reach dnsmasq's command line or files malformed."""
    net = _check_server(server)
    for h in server.hosts:
        _check_host(h, net)
    return server


def argv(server: DhcpServer, paths: NetworkPaths, options: DnsmasqOptions = DnsmasqOptions()) -> list[str]:
    """The command line of the network's dnsmasq.

    Compared with the original: --dhcp-hostsdir instead of one hosts file (a new host is
    read without a signal); --port=0 instead of a DNS forwarder, hence no --strict-order
    or --server (they only steer DNS forwarding); no --keep-in-foreground: dnsmasq
    daemonizes, reports start-up errors through its exit code, and is found again by
    its pid file, so an agent restart leaves DHCP running.
    """
    _check_server(server)
    out = [
        options.binary,
        "--bind-interfaces",  # several dnsmasq (one per network) side by side
        f"--conf-file={options.config_file}",
        f"--pid-file={paths.pid}",
        f"--listen-address={server.listen_address}",
        "--except-interface=lo",
        f"--dhcp-range=set:{tag(server)},{server.dhcp_start},static,{server.netmask},{server.lease_time}s",
        f"--dhcp-lease-max={subnet(server).num_addresses}",
        f"--dhcp-hostsdir={paths.hosts_dir}",
        f"--dhcp-optsfile={paths.opts}",
        f"--dhcp-script={paths.script}",
        "--leasefile-ro",
        # Leases are keyed by MAC only: a guest cannot end another's lease with a DHCPRELEASE
        # or DECLINE carrying the victim's client identifier (the bridge filter already
        # drops a chaddr that is not the sender port's MAC).
        "--dhcp-ignore-clid",
    ]
    if server.domain:  # dnsmasq rejects an empty --domain
        out.append(f"--domain={server.domain}")
    out += ["--no-hosts", "--no-resolv", "--port=0"]
    if options.log_facility:
        out.append(f"--log-facility={options.log_facility}")
    if options.log_dhcp:
        out.append("--log-dhcp")
    return out


def host_filename(mac: str) -> str:
    """One file per MAC in hosts.d; never starts with '.' (dnsmasq would skip it)."""
    return mac.replace(":", "-")


def host_line(host: DhcpHost, domain: str, lease_time: int) -> str:
    """``mac,hostname.domain,address,<lease>s``: only this MAC gets this address."""
    name = f"{host.hostname}.{domain}" if domain else host.hostname
    fields = [host.mac]
    if domain or not _NOT_A_NAME.match(name):
        fields.append(name)
    fields += [host.address, f"{lease_time}s"]
    return ",".join(fields)


def hosts_files(server: DhcpServer) -> dict[str, str]:
    """The contents of hosts.d: file name -> text (several lines if a MAC has several
    addresses on this network)."""
    net = _check_server(server)
    lines: dict[str, list[str]] = {}
    for h in server.hosts:
        _check_host(h, net)
    for h in sorted(server.hosts, key=lambda h: (h.mac, IPv4Address(h.address))):
        lines.setdefault(host_filename(h.mac), []).append(host_line(h, server.domain, server.lease_time))
    return {name: "\n".join(ls) + "\n" for name, ls in lines.items()}


def opts_file(server: DhcpServer) -> str:
    """DHCP options: router (an empty option 3 when there is none, else dnsmasq would
    offer itself as the default route), DNS servers and MTU."""
    _check_server(server)
    t = tag(server)
    router = f"tag:{t},option:router" + (f",{server.router}" if server.router else "")
    lines = [router]
    if server.dns_servers:
        lines.append(f"tag:{t},option:dns-server,{','.join(server.dns_servers)}")
    if server.mtu is not None:
        lines.append(f"tag:{t},option:mtu,{server.mtu}")
    return "\n".join(lines) + "\n"


def lease_script(lease_script_argv: Sequence[str], server: DhcpServer, host: str, paths: NetworkPaths) -> str:
    """The per-network wrapper given to --dhcp-script.

    dnsmasq takes one absolute path and passes nothing but the event (``add MAC IP
    NAME``...), so the network, host and database must be baked into an executable.
    This is the only shell text novanet writes: every value is quoted with shlex.quote
    and dnsmasq's arguments are only ever expanded inside double quotes.

    ``add``/``del`` cost no Python start: the event is written to the spool (see
    ``novanet.agent.leasespool``) and one drainer started in the background unless one
    holds the spool's lock already (``flock -n``), so a burst of leases is committed in a
    few transactions and an event survives a database outage. ``init`` (dnsmasq's start)
    applies what waits in the spool, then prints the leases from the database.
    Renewals (``old``, also sent for every lease on SIGHUP) end in the shell: they change
    nothing in the database, and starting Python for each renewal of every instance,
    every lease time, would cost a core per ~100 instances.
    """
    if not lease_script_argv:
        raise InvalidInput("the lease script command is empty")
    cmd = [
        *lease_script_argv,
        "--network",
        names.network_uuid(server.network_uuid),
        "--host",
        names.host_name(host),
        "--lease-time",
        str(server.lease_time),
        "--spool",
        str(paths.spool),
    ]
    quoted = " ".join(shlex.quote(a) for a in cmd)
    spool = shlex.quote(str(paths.spool))
    log = shlex.quote(str(paths.spool_log))
    return (
        "#!/bin/bash\n"
        f"# dnsmasq lease script of network {server.network_uuid}, written by novanet\n"
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"spool={spool}\n"
        'case "$1" in\n'
        "add|del)\n"
        '    name="${EPOCHREALTIME/[.,]/}-$$"\n'
        '    printf \'%s %s %s\\n\' "$1" "$2" "$3" >"$spool/.$name" &&\n'
        '        mv -f "$spool/.$name" "$spool/$name" || exit 1\n'
        '    if flock -n "$spool/.lock" true; then\n'
        f"        {quoted} -- drain </dev/null >>{log} 2>&1 &\n"
        "    fi\n"
        "    exit 0 ;;\n"
        f"init) exec {quoted} -- init ;;\n"
        "*) exit 0 ;;  # old (renewals), tftp, arp-add...: nothing to record\n"
        "esac\n"
    )
