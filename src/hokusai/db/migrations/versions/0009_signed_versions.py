"""Signed versions: the public keys a workspace trusts, and its setting that a protected
alias may only name a version signed by one of them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing workspaces keep what they had: signed versions are not required.
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column(
                "require_signed_versions",
                sa.Boolean,
                nullable=False,
                server_default=sa.false(),
            )
        )
    op.create_table(
        "trusted_keys",
        sa.Column("workspace", sa.String(63), primary_key=True),
        sa.Column("fingerprint", sa.String(71), primary_key=True),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trusted_keys")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("require_signed_versions")
