"""Initial schema: networks, instances, virtual interfaces, fixed and floating IPs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("injected", sa.Boolean, nullable=False),
        sa.Column("cidr", sa.String(43), nullable=False),
        sa.Column("cidr_v6", sa.String(43), nullable=True),
        sa.Column("multi_host", sa.Boolean, nullable=False),
        sa.Column("netmask", sa.String(39), nullable=False),
        sa.Column("gateway", sa.String(39), nullable=True),
        sa.Column("broadcast", sa.String(39), nullable=False),
        sa.Column("dns1", sa.String(39), nullable=True),
        sa.Column("dns2", sa.String(39), nullable=True),
        sa.Column("dhcp_start", sa.String(39), nullable=True),
        sa.Column("bridge", sa.String(15), nullable=True),
        sa.Column("bridge_interface", sa.String(15), nullable=True),
        sa.Column("vlan", sa.Integer, nullable=True),
        sa.Column("vpn_public_address", sa.String(39), nullable=True),
        sa.Column("vpn_public_port", sa.Integer, nullable=True),
        sa.Column("vpn_private_address", sa.String(39), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("priority", sa.Integer, nullable=True),
        sa.Column("rxtx_base", sa.Integer, nullable=True),
        sa.Column("manager", sa.String(16), nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name="pk_networks"),
        sa.UniqueConstraint("uuid", name="uq_networks_uuid"),
        sa.UniqueConstraint("cidr", name="uq_networks_cidr"),
        sa.UniqueConstraint("vlan", name="uq_networks_vlan"),
        sa.UniqueConstraint(
            "vpn_public_address", "vpn_public_port", name="uq_networks_vpn_public_address_vpn_public_port"
        ),
    )
    op.create_index("ix_networks_project_id", "networks", ["project_id"])

    op.create_table(
        "instances",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(63), nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("uuid", name="pk_instances"),
    )
    op.create_index("ix_instances_project_id", "instances", ["project_id"])
    op.create_index("ix_instances_host", "instances", ["host"])

    op.create_table(
        "virtual_interfaces",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("address", sa.String(17), nullable=False),
        sa.Column("network_id", sa.Integer, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name="pk_virtual_interfaces"),
        sa.UniqueConstraint("uuid", name="uq_virtual_interfaces_uuid"),
        sa.UniqueConstraint("address", name="uq_virtual_interfaces_address"),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name="fk_virtual_interfaces_network_id"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            ondelete="CASCADE",
            name="fk_virtual_interfaces_instance_uuid",
        ),
    )
    op.create_index("ix_virtual_interfaces_network_id", "virtual_interfaces", ["network_id"])
    op.create_index("ix_virtual_interfaces_instance_uuid", "virtual_interfaces", ["instance_uuid"])

    op.create_table(
        "fixed_ips",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column("network_id", sa.Integer, nullable=False),
        sa.Column("virtual_interface_id", sa.Integer, nullable=True),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("allocated", sa.Boolean, nullable=False),
        sa.Column("leased", sa.Boolean, nullable=False),
        sa.Column("reserved", sa.Boolean, nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name="pk_fixed_ips"),
        sa.UniqueConstraint("address", name="uq_fixed_ips_address"),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], ondelete="CASCADE", name="fk_fixed_ips_network_id"
        ),
        sa.ForeignKeyConstraint(
            ["virtual_interface_id"],
            ["virtual_interfaces.id"],
            ondelete="SET NULL",
            name="fk_fixed_ips_virtual_interface_id",
        ),
    )
    op.create_index("ix_fixed_ips_virtual_interface_id", "fixed_ips", ["virtual_interface_id"])
    op.create_index("ix_fixed_ips_instance_uuid", "fixed_ips", ["instance_uuid"])
    op.create_index("ix_fixed_ips_network_id_id", "fixed_ips", ["network_id", "id"])
    op.create_index(
        "ix_fixed_ips_free",
        "fixed_ips",
        ["network_id", "id"],
        sqlite_where=sa.text("instance_uuid IS NULL AND host IS NULL AND reserved = 0"),
        postgresql_where=sa.text("instance_uuid IS NULL AND host IS NULL AND reserved = false"),
    )
    op.create_index(
        "uq_fixed_ips_network_host",
        "fixed_ips",
        ["network_id", "host"],
        unique=True,
        sqlite_where=sa.text("host IS NOT NULL"),
        postgresql_where=sa.text("host IS NOT NULL"),
    )

    op.create_table(
        "floating_ips",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column("fixed_ip_id", sa.Integer, nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("auto_assigned", sa.Boolean, nullable=False),
        sa.Column("pool", sa.String(255), nullable=False),
        sa.Column("interface", sa.String(15), nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name="pk_floating_ips"),
        sa.UniqueConstraint("address", name="uq_floating_ips_address"),
        sa.ForeignKeyConstraint(
            ["fixed_ip_id"],
            ["fixed_ips.id"],
            ondelete="SET NULL",
            name="fk_floating_ips_fixed_ip_id",
        ),
    )
    op.create_index("ix_floating_ips_fixed_ip_id", "floating_ips", ["fixed_ip_id"])
    op.create_index("ix_floating_ips_project_id", "floating_ips", ["project_id"])
    op.create_index("ix_floating_ips_host", "floating_ips", ["host"])
    op.create_index(
        "ix_floating_ips_free",
        "floating_ips",
        ["pool", "id"],
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    )

    op.create_table(
        "dhcp_releases",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("network_id", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name="pk_dhcp_releases"),
        sa.UniqueConstraint("address", "mac", name="uq_dhcp_releases_address_mac"),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], ondelete="CASCADE", name="fk_dhcp_releases_network_id"
        ),
    )
    op.create_index("ix_dhcp_releases_host", "dhcp_releases", ["host"])


def downgrade() -> None:
    for table in (
        "dhcp_releases",
        "floating_ips",
        "fixed_ips",
        "virtual_interfaces",
        "instances",
        "networks",
    ):
        op.drop_table(table)
