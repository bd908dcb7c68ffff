"""Whom a change concerns: the hosts and networks a change-log row is scoped to.

An agent reads the change rows of its own host and of the networks it carries (see
agent/snapshot.py). So a change names:

- the host of the instance (its VIFs, filters, DHCP reservations in multi-host),
- the DHCP/gateway host of each single-host network involved (its reservations, NAT),
- the network itself only when the set of hosts on it changes (the host's first
  instance on it arrives, or its last one leaves): the other hosts of the network then
  gain or lose a peer (VXLAN remotes). Any other change on host B costs host A nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import instances, networks, virtual_interfaces


def instance_scope(
    conn: Connection, host: str, network_ids: Iterable[int], instance_uuid: str
) -> tuple[set[str], set[int]]:
    """(hosts, networks) an allocation or deallocation of ``instance_uuid`` on ``host``
    in ``network_ids`` concerns. Read inside the changing transaction, after the change."""
    [one] = batch_scope(conn, [(instance_uuid, host, list(network_ids))])
    return one


Member = tuple[str, str, Sequence[int]]  # instance uuid, its host, its networks


def batch_scope(conn: Connection, members: Sequence[Member]) -> list[tuple[set[str], set[int]]]:
    """``instance_scope`` of each member of a batch allocated or deallocated together.

    A network enters a member's scope when no instance outside the batch has the
    member's host on it: the batch as a whole brings the host to the network (or takes
    it away), so its peers must hear of it even when the batch holds several of the
    host's instances there. One probe per distinct (host, network) pair.
    """
    all_nets = sorted({n for _, _, nets in members for n in nets})
    gateways: set[tuple[int, str]] = set()
    if all_nets:
        gateways = {
            (row.id, row.host)
            for row in conn.execute(_NETWORK_HOSTS, {"ids": all_nets})
            if not row.multi_host and row.host
        }
    batch = sorted({uuid for uuid, _, _ in members})
    pairs = sorted({(host, n) for _, host, nets in members for n in nets})
    # Networks where the host has another instance: its peers need not hear of this one.
    # One probe per pair that stops at the first match (a host with 10,000 instances on
    # the network finds one at once; a host without any reads its own instances).
    kept = {
        (h, n) for h, n in pairs if conn.execute(_OTHER_HERE, {"host": h, "net": n, "uuids": batch}).first()
    }
    out = []
    for _, host, nets in members:
        hosts = {host} | {h for n, h in gateways if n in nets}
        out.append((hosts, {n for n in nets if (host, n) not in kept}))
    return out


_NETWORK_HOSTS = sa.select(networks.c.id, networks.c.host, networks.c.multi_host).where(
    networks.c.id.in_(sa.bindparam("ids", expanding=True))
)
_OTHER_HERE = (
    sa.select(sa.literal(1))
    .select_from(instances.join(virtual_interfaces, virtual_interfaces.c.instance_uuid == instances.c.uuid))
    .where(
        instances.c.host == sa.bindparam("host"),
        instances.c.uuid.not_in(sa.bindparam("uuids", expanding=True)),
        virtual_interfaces.c.network_id == sa.bindparam("net"),
    )
    .limit(1)
)
