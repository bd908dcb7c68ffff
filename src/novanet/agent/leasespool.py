"""The lease-event spool: how dnsmasq's ``add``/``del`` reach the database.

dnsmasq runs its lease script once per event and waits for it, one event at a time. A
Python process per event (start-up, database connection, one commit) costs 0.3-0.5 s of
CPU: 70 guests asking at once on a loaded host queued their events for minutes, and an
event whose script failed (database down, connections exhausted) was lost for good,
since the renewals that follow are ``old`` events, which change nothing.

So the per-network script (``novanet.host.dnsmasq.config.lease_script``) only writes the
event to a file in the network's spool directory (``<network dir>/lease-events/``, 0700):
``<microseconds since the epoch>-<pid>`` holding ``add|del MAC IP``, written under a
dot-name and renamed into place, so a reader never sees half an event. It then starts
one drainer in the background unless one already holds the spool's lock. The drainer
(and the agent, every second, as the safety net) takes the lock, applies every waiting
event in name order (dnsmasq's order: it runs one script at a time) in one transaction,
then removes the files. An event stays on disk until its transaction commits: a
database outage delays leases, it loses none.

Every value in a file is untrusted: an event that is not ``add``/``del`` with a MAC and
an IPv4 address is removed, logged and counted, never applied.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from novanet.domain.errors import InvalidInput
from novanet.service import fixed
from novanet.service.context import Ctx

log = logging.getLogger("novanet.leases")

LOCK = ".lock"
EVENT_NAME = re.compile(r"^[0-9]{1,20}-[0-9]{1,10}$")
MAX_BATCH = 500  # events per transaction
MAX_EVENT_BYTES = 128  # "del" + MAC + IPv4 is under 50
STALE_TEMP = 60.0  # seconds after which a dot-file is a script that died mid-write


@dataclass
class DrainReport:
    applied: int = 0  # events whose transaction committed (leased, released, freed)
    ignored: int = 0  # committed, but not matching the database (logged)
    bad: int = 0  # malformed files removed
    busy: bool = False  # another drainer held the lock: it will apply what is waiting

    def __iadd__(self, other: DrainReport) -> DrainReport:
        self.applied += other.applied
        self.ignored += other.ignored
        self.bad += other.bad
        self.busy = self.busy or other.busy
        return self


def _listing(spool: Path) -> tuple[list[str], list[str]]:
    """(waiting events oldest first, temporary dot-files) of ``spool``; none for a spool
    that is gone."""
    try:
        names = os.listdir(spool)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    events = sorted((n for n in names if EVENT_NAME.match(n)), key=lambda n: tuple(map(int, n.split("-"))))
    return events, [n for n in names if n.startswith(".") and n != LOCK]


def pending(spool: Path) -> list[str]:
    """The names of the waiting events, oldest first."""
    return _listing(spool)[0]


def _lock(spool: Path, wait: float) -> int | None:
    """The spool's lock (an open descriptor), or None if another drainer holds it for
    longer than ``wait`` seconds."""
    fd = os.open(spool / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            return None
        time.sleep(0.02)


def _read(path: Path) -> fixed.LeaseEvent:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        raw = os.read(fd, MAX_EVENT_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidInput("longer than an event")
    try:
        fields = raw.decode("ascii").split()
    except UnicodeDecodeError:
        raise InvalidInput("not ASCII") from None
    if len(fields) != 3:
        raise InvalidInput(f"expected 'add|del MAC IP', got {len(fields)} fields")
    return fixed.LeaseEvent.parse(fields[0], fields[1], fields[2])


def _remove_stale_temps(spool: Path, temps: list[str]) -> None:
    now = time.time()
    for name in temps:
        try:
            if now - os.lstat(spool / name).st_mtime > STALE_TEMP:
                os.unlink(spool / name)
        except FileNotFoundError:
            pass


def _drain_locked(ctx: Ctx, spool: Path, report: DrainReport) -> None:
    while names := pending(spool)[:MAX_BATCH]:
        events: list[fixed.LeaseEvent] = []
        files: list[Path] = []
        for name in names:
            path = spool / name
            try:
                events.append(_read(path))
                files.append(path)
            except (InvalidInput, OSError) as exc:
                msg = exc.message if isinstance(exc, InvalidInput) else str(exc)
                log.warning("lease event %s removed unapplied: %s", path, msg)
                report.bad += 1
                path.unlink(missing_ok=True)
        results = fixed.lease_events(ctx, events)  # a database error leaves every file in place
        for ev, res in zip(events, results, strict=True):
            if res.action == "ignored":
                report.ignored += 1
                log.warning("lease %s %s %s ignored: not this address's VIF", ev.action, ev.mac, ev.address)
            else:
                report.applied += 1
        for path in files:
            path.unlink(missing_ok=True)


def drain(ctx: Ctx, spool: Path, *, wait: float = 0.0) -> DrainReport:
    """Apply every waiting event of ``spool``. Returns at once (``busy``) when another
    drainer holds the lock for more than ``wait`` seconds: that one applies them.

    After letting the lock go, the spool is looked at again: an event written while the
    lock was held, whose script saw the lock taken and started no drainer, is never left
    behind. Database errors propagate, with the events left on disk.
    """
    report = DrainReport()
    events, temps = _listing(spool)  # the common case, every second per network: one listing
    if temps:
        _remove_stale_temps(spool, temps)
    if not events:
        return report
    while True:
        fd = _lock(spool, wait)
        if fd is None:
            report.busy = True
            return report
        try:
            _drain_locked(ctx, spool, report)
        finally:
            os.close(fd)  # closing the only descriptor drops the lock
        if not pending(spool):
            return report
        wait = 0.0
