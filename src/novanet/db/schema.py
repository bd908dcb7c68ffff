"""Tables, as SQLAlchemy Core metadata. Migrations (migrations/versions) create them.

Rows are deleted for real (the original soft-deleted everything, which left unique
constraints unusable); uniqueness lives in constraints, so no race can break it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    ]


networks = sa.Table(
    "networks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("injected", sa.Boolean, nullable=False, default=False),
    sa.Column("cidr", sa.String(43), nullable=False, unique=True),
    sa.Column("cidr_v6", sa.String(43), nullable=True),
    sa.Column("multi_host", sa.Boolean, nullable=False, default=False),
    sa.Column("netmask", sa.String(39), nullable=False),
    sa.Column("gateway", sa.String(39), nullable=True),
    sa.Column("broadcast", sa.String(39), nullable=False),
    sa.Column("dns1", sa.String(39), nullable=True),
    sa.Column("dns2", sa.String(39), nullable=True),
    sa.Column("dhcp_start", sa.String(39), nullable=True),
    sa.Column("bridge", sa.String(15), nullable=True),
    sa.Column("bridge_interface", sa.String(15), nullable=True),
    sa.Column("vlan", sa.Integer, nullable=True, unique=True),
    sa.Column("vpn_public_address", sa.String(39), nullable=True),
    sa.Column("vpn_public_port", sa.Integer, nullable=True),
    sa.Column("vpn_private_address", sa.String(39), nullable=True),
    sa.Column("project_id", sa.String(255), nullable=True, index=True),
    sa.Column("host", sa.String(255), nullable=True, index=True),
    sa.Column("priority", sa.Integer, nullable=True),
    sa.Column("rxtx_base", sa.Integer, nullable=True),
    sa.Column("manager", sa.String(16), nullable=False),
    *_ts(),
    sa.UniqueConstraint("vpn_public_address", "vpn_public_port"),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False, index=True),
    sa.Column("hostname", sa.String(63), nullable=False),
    *_ts(),
)

virtual_interfaces = sa.Table(
    "virtual_interfaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("address", sa.String(17), nullable=False, unique=True),
    sa.Column("network_id", sa.Integer, sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column(
        "instance_uuid",
        sa.String(36),
        sa.ForeignKey("instances.uuid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    *_ts(),
)

fixed_ips = sa.Table(
    "fixed_ips",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("address", sa.String(39), nullable=False, unique=True),
    sa.Column(
        "network_id",
        sa.Integer,
        sa.ForeignKey("networks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "virtual_interface_id",
        sa.Integer,
        sa.ForeignKey("virtual_interfaces.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("instance_uuid", sa.String(36), nullable=True, index=True),
    sa.Column("allocated", sa.Boolean, nullable=False, default=False),
    sa.Column("leased", sa.Boolean, nullable=False, default=False),
    sa.Column("reserved", sa.Boolean, nullable=False, default=False),
    sa.Column("host", sa.String(255), nullable=True),
    *_ts(),
    # The free list: picking the first free address is one index probe at any fill level.
    sa.Index(
        "ix_fixed_ips_free",
        "network_id",
        "id",
        sqlite_where=sa.text("instance_uuid IS NULL AND host IS NULL AND reserved = 0"),
        postgresql_where=sa.text("instance_uuid IS NULL AND host IS NULL AND reserved = false"),
    ),
    # One gateway/DHCP address per host and network (multi-host).
    sa.Index(
        "uq_fixed_ips_network_host",
        "network_id",
        "host",
        unique=True,
        sqlite_where=sa.text("host IS NOT NULL"),
        postgresql_where=sa.text("host IS NOT NULL"),
    ),
    sa.Index("ix_fixed_ips_network_id_id", "network_id", "id"),
    # A host's own gateway/DHCP addresses (the scoped snapshot reads them by host).
    sa.Index(
        "ix_fixed_ips_host",
        "host",
        sqlite_where=sa.text("host IS NOT NULL"),
        postgresql_where=sa.text("host IS NOT NULL"),
    ),
)

floating_ips = sa.Table(
    "floating_ips",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("address", sa.String(39), nullable=False, unique=True),
    sa.Column(
        "fixed_ip_id",
        sa.Integer,
        sa.ForeignKey("fixed_ips.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("project_id", sa.String(255), nullable=True, index=True),
    sa.Column("host", sa.String(255), nullable=True, index=True),
    sa.Column("auto_assigned", sa.Boolean, nullable=False, default=False),
    sa.Column("pool", sa.String(255), nullable=False),
    sa.Column("interface", sa.String(15), nullable=False),
    *_ts(),
    sa.Index(
        "ix_floating_ips_free",
        "pool",
        "id",
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    ),
)

# Leases the host's DHCP server must drop (force_dhcp_release): an outbox the agent of
# ``host`` drains with dhcp_release, so a crash between deallocation and release loses
# nothing.
dhcp_releases = sa.Table(
    "dhcp_releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "network_id",
        sa.Integer,
        sa.ForeignKey("networks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("host", sa.String(255), nullable=True, index=True),
    sa.Column("address", sa.String(39), nullable=False),
    sa.Column("mac", sa.String(17), nullable=False),
    *_ts(),
    sa.UniqueConstraint("address", "mac"),
)

# What changed, for the host agents: one row per changed object and scope, read in id
# order. kind: network (ref = uuid), instance (uuid), floating (address), host (name).
# Scope: the host (``host``) or the network (``network_id``) the row concerns; an agent
# reads the rows of its own host and of the networks it carries. Both NULL: every host.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("network_id", sa.Integer, nullable=True),
    sa.Index("ix_changes_host_id", "host", "id"),
    sa.Index("ix_changes_network_id_id", "network_id", "id"),
    sa.Index(
        "ix_changes_global",
        "id",
        sqlite_where=sa.text("host IS NULL AND network_id IS NULL"),
        postgresql_where=sa.text("host IS NULL AND network_id IS NULL"),
    ),
    sqlite_autoincrement=True,
)

# Hosts that run an agent, with the address other hosts reach them on (VXLAN underlay).
hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("underlay_address", sa.String(39), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    # What the agent process is (agent, serve) and when it last said it is alive.
    sa.Column("role", sa.String(32), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),
)

# API tokens: only the sha256 of each secret is kept. roles: comma-separated.
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=True),
    sa.Column("roles", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime, nullable=True),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

# Cloudpipe: the projects whose VPN is wanted (a row per `vpn create`).
vpns = sa.Table(
    "vpns",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime, nullable=True),
)

# Certificates issued for the VPNs (never their keys): serial (hex), whose, revocation.
vpn_certs = sa.Table(
    "vpn_certs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("serial", sa.String(64), nullable=False, unique=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_name", sa.String(64), nullable=True),  # NULL: the server's certificate
    sa.Column("ca", sa.String(255), nullable=False),  # the issuing CA's common name
    sa.Column("not_after", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)
