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

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.schema import instances, networks, virtual_interfaces


def instance_scope(
    conn: Connection, host: str, network_ids: Iterable[int], instance_uuid: str
) -> tuple[set[str], set[int]]:
    """(hosts, networks) an allocation or deallocation of ``instance_uuid`` on ``host``
    in ``network_ids`` concerns. Read inside the changing transaction, after the change."""
    nets = sorted(set(network_ids))
    hosts = {host}
    if not nets:
        return hosts, set()
    for row in conn.execute(_NETWORK_HOSTS, {"ids": nets}):
        if not row.multi_host and row.host:
            hosts.add(row.host)
    # Networks where ``host`` has another instance: its peers need not hear of this one.
    # One probe per network that stops at the first match (a host with 10,000 instances
    # on the network finds one at once; a host without any reads its own instances).
    kept = {
        n for n in nets if conn.execute(_OTHER_HERE, {"host": host, "net": n, "uuid": instance_uuid}).first()
    }
    return hosts, set(nets) - kept


_NETWORK_HOSTS = sa.select(networks.c.id, networks.c.host, networks.c.multi_host).where(
    networks.c.id.in_(sa.bindparam("ids", expanding=True))
)
_OTHER_HERE = (
    sa.select(sa.literal(1))
    .select_from(instances.join(virtual_interfaces, virtual_interfaces.c.instance_uuid == instances.c.uuid))
    .where(
        instances.c.host == sa.bindparam("host"),
        instances.c.uuid != sa.bindparam("uuid"),
        virtual_interfaces.c.network_id == sa.bindparam("net"),
    )
    .limit(1)
)
