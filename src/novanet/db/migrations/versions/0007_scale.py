"""Host-scoped changes (issue 10): whom each change concerns, and the indexes that let an
agent read only its share of the cloud.

- changes.host / changes.network_id: the scope of one change row (a change concerning
  several hosts or networks is one row per host and per network; both NULL = everyone).
- indexes serving the scoped reads: changes by (host, id) and (network_id, id), the
  global rows by id, networks by host, fixed_ips by host (gateway addresses).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_GLOBAL = "host IS NULL AND network_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("network_id", sa.Integer, nullable=True))
    op.create_index("ix_changes_host_id", "changes", ["host", "id"])
    op.create_index("ix_changes_network_id_id", "changes", ["network_id", "id"])
    op.create_index(
        "ix_changes_global",
        "changes",
        ["id"],
        sqlite_where=sa.text(_GLOBAL),
        postgresql_where=sa.text(_GLOBAL),
    )
    op.create_index("ix_networks_host", "networks", ["host"])
    op.create_index(
        "ix_fixed_ips_host",
        "fixed_ips",
        ["host"],
        sqlite_where=sa.text("host IS NOT NULL"),
        postgresql_where=sa.text("host IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_fixed_ips_host", table_name="fixed_ips")
    op.drop_index("ix_networks_host", table_name="networks")
    op.drop_index("ix_changes_global", table_name="changes")
    op.drop_index("ix_changes_network_id_id", table_name="changes")
    op.drop_index("ix_changes_host_id", table_name="changes")
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("network_id")
        batch.drop_column("host")
