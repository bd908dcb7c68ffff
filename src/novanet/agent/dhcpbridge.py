"""The lease script dnsmasq runs (--dhcp-script), through the per-network wrapper the
DnsmasqManager writes.

    python -m novanet.agent.dhcpbridge [--config-file F]... [--db URL] --network UUID
        [--host H] [--lease-time N] -- ACTION [MAC IP [HOSTNAME]]

The wrapper hands ``add``/``del`` to the spool (``novanet.agent.leasespool``) and runs
this module with ``drain`` in the background: every waiting event is applied in one
transaction. ``add``/``old`` given here directly report a lease (fixed IP leased),
``del`` its end (an allocated address only loses its leased flag; a deallocated one
awaiting release is freed). ``init`` applies the spool, then prints the network's leases
from the database, as --leasefile-ro asks: one ``<expiry> <mac> <ip> <hostname> *``
line each. Other actions (``tftp``, ``arp-add``...) are ignored, as dnsmasq's manual
asks of scripts. Errors: one line on stderr and a non-zero exit; dnsmasq logs it (and
refuses to start when ``init`` fails).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet import config as C
from novanet.agent import leasespool
from novanet.agent.private import read_private
from novanet.db.engine import create_engine
from novanet.db.schema import fixed_ips, instances, networks, virtual_interfaces
from novanet.domain import names
from novanet.domain.errors import InvalidInput, NotFound, NovanetError
from novanet.service import fixed
from novanet.service.context import Ctx, run, utcnow

PROG = "novanet-dhcpbridge"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False)
    p.add_argument("--config-file", action="append", default=[])
    p.add_argument("--db", default=None, help="database URL (overrides [database] connection)")
    p.add_argument("--db-file", default=None, help="a 0600 file holding the database URL (the agent's way)")
    p.add_argument("--network", required=True, help="uuid of the network this dnsmasq serves")
    p.add_argument("--host", default=None, help="this host (multi-host networks: only its leases)")
    p.add_argument("--lease-time", type=int, default=None)
    p.add_argument("--spool", default=None, help="the network's lease-event spool directory")
    p.add_argument("action")
    p.add_argument("args", nargs="*")
    return p


def script_argv(
    config_files: Sequence[str] = (), db_file: str | Path | None = None, python: str | None = None
) -> list[str]:
    """The command an agent gives DnsmasqManager as ``lease_script_argv``: the database
    URL only by the path of a 0600 file, never on the command line."""
    out = [python or sys.executable, "-m", "novanet.agent.dhcpbridge"]
    for f in config_files:
        out += ["--config-file", f]
    if db_file:
        out += ["--db-file", str(db_file)]
    return out


def _epoch(when: dt.datetime) -> int:
    # The database keeps naive UTC.
    return int(when.replace(tzinfo=dt.UTC).timestamp())


def init_lines(ctx: Ctx, network_uuid: str, host: str | None, lease_time: int) -> list[str]:
    """The network's current leases in dnsmasq lease-file format.

    A lease is a fixed IP that is allocated, leased and has its VIF (the MAC); its
    expiry is the last lease event (``add``/``old``, which dnsmasq also sends on every
    renewal under --leasefile-ro) plus the lease time. In a multi-host network only the
    leases of instances on ``host`` belong to this host's dnsmasq.
    """
    uuid = names.network_uuid(network_uuid)

    def tx(conn: Connection) -> list[str]:
        net = conn.execute(
            sa.select(networks.c.id, networks.c.multi_host).where(networks.c.uuid == uuid)
        ).first()
        if net is None:
            raise NotFound(f"network {uuid} not found")
        stmt = (
            sa.select(
                fixed_ips.c.address,
                fixed_ips.c.updated_at,
                virtual_interfaces.c.address.label("mac"),
                instances.c.hostname,
            )
            .select_from(
                fixed_ips.join(
                    virtual_interfaces, virtual_interfaces.c.id == fixed_ips.c.virtual_interface_id
                ).outerjoin(instances, instances.c.uuid == fixed_ips.c.instance_uuid)
            )
            .where(
                fixed_ips.c.network_id == net.id,
                fixed_ips.c.allocated.is_(True),
                fixed_ips.c.leased.is_(True),
            )
            .order_by(fixed_ips.c.id)
        )
        if net.multi_host and host is not None:
            stmt = stmt.where(instances.c.host == host)
        now = utcnow()
        return [
            f"{_epoch((r.updated_at or now) + dt.timedelta(seconds=lease_time))} {r.mac} {r.address} "
            f"{r.hostname or '*'} *"
            for r in conn.execute(stmt)
        ]

    return run(ctx, tx, write=False)


def _context(ns: argparse.Namespace) -> Ctx:
    db_url = read_private(Path(ns.db_file)) if ns.db_file else ns.db
    cfg = C.load(ns.config_file, overrides={"connection": db_url})
    return Ctx(create_engine(cfg.database_url), cfg)


def _trim_log(err: TextIO, limit: int = 1 << 20) -> None:
    """The background drainer's output is appended to a file: keep it bounded."""
    try:
        fd = err.fileno()
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            os.ftruncate(fd, 0)
    except (OSError, ValueError, AttributeError):
        pass


def _handle(ns: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    action = ns.action
    if action in ("add", "old", "del"):
        if len(ns.args) not in (2, 3):
            raise InvalidInput(f"{action} needs MAC IP [HOSTNAME], got {len(ns.args)} arguments")
        mac, address = ns.args[0], ns.args[1]
        ctx = _context(ns)
        res = fixed.release(ctx, address, mac) if action == "del" else fixed.lease(ctx, address, mac)
        if res.action == "ignored":
            # MAC and address do not match the database (a forged or stale event): nothing
            # changed; say so in dnsmasq's log.
            err.write(f"{PROG}: {action} {mac} {address}: ignored, not this address's VIF\n")
        return
    if action == "drain":
        if not ns.spool:
            raise InvalidInput("drain needs --spool DIR")
        _trim_log(err)
        report = leasespool.drain(_context(ns), Path(ns.spool))
        if report.bad or report.ignored:
            err.write(f"{PROG}: drain: {report.bad} malformed and {report.ignored} ignored events\n")
        return
    if action == "init":
        ctx = _context(ns)
        if ns.spool:  # what dnsmasq reported before it stopped goes in first
            leasespool.drain(ctx, Path(ns.spool), wait=5.0)
        lease_time = ns.lease_time if ns.lease_time is not None else ctx.config.dhcp_lease_time
        for line in init_lines(ctx, ns.network, ns.host, lease_time):
            out.write(line + "\n")
        out.flush()
    # any other action: ignored on purpose


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one lease event; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        ns = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        err.write(f"{PROG}: {exc}\n")
        return 2
    try:
        _handle(ns, out, err)
    except NovanetError as exc:
        err.write(f"{PROG}: {ns.action}: {exc.message}\n")
        return exc.exit_code
    except Exception as exc:  # one line for dnsmasq's log, never a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        err.write(f"{PROG}: {ns.action}: {type(exc).__name__}: {first}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
