"""Workspaces: every key, webhook endpoint, event and audit row belongs to one.

An existing single-tenant store moves into the ``default`` workspace with nothing lost:
read and write keys and every endpoint and event land in ``default``; admin keys, which
could administer everything, become platform admin keys (no workspace), so they keep
every power they had. Audit rows written before keep no workspace: they were written
by a platform that had only one.

Revision ID: 0005
Revises: 0004
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT = "default"
DEFAULT_PROTECTED_ALIASES = ["production", "champion"]


def upgrade() -> None:
    workspaces = op.create_table(
        "workspaces",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("protected_aliases", sa.Text, nullable=False),
        sa.Column("promotion_gate", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        workspaces,
        [
            {
                "name": DEFAULT,
                "description": "The workspace of everything registered before workspaces",
                "protected_aliases": json.dumps(DEFAULT_PROTECTED_ALIASES),
                "promotion_gate": False,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("workspace", sa.String(63), nullable=True))
        batch.add_column(sa.Column("model_patterns", sa.Text, nullable=True))
        batch.create_index("ix_api_keys_workspace", ["workspace"])
    op.execute(
        sa.text("UPDATE api_keys SET workspace = :ws WHERE scope <> 'admin'").bindparams(ws=DEFAULT)
    )

    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(
            sa.Column("workspace", sa.String(63), nullable=False, server_default=DEFAULT)
        )
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("workspace", sa.String(63), nullable=False, server_default=DEFAULT)
        )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("workspace", sa.String(63), nullable=True))
        batch.create_index("ix_audit_log_workspace_at", ["workspace", "at"])
    with op.batch_alter_table("registry_changes") as batch:
        batch.add_column(sa.Column("workspace", sa.String(63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_changes") as batch:
        batch.drop_column("workspace")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index("ix_audit_log_workspace_at")
        batch.drop_column("workspace")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("workspace")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("workspace")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_workspace")
        batch.drop_column("model_patterns")
        batch.drop_column("workspace")
    op.drop_table("workspaces")
