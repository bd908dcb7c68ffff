"""Cloudpipe VPN (issue 7): wanted VPNs and the certificates issued for them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vpns",
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime, nullable=True),
        sa.PrimaryKeyConstraint("project_id", name="pk_vpns"),
    )
    op.create_table(
        "vpn_certs",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("ca", sa.String(255), nullable=False),
        sa.Column("not_after", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vpn_certs"),
        sa.UniqueConstraint("serial", name="uq_vpn_certs_serial"),
    )
    op.create_index("ix_vpn_certs_project_id", "vpn_certs", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_vpn_certs_project_id", table_name="vpn_certs")
    op.drop_table("vpn_certs")
    op.drop_table("vpns")
