"""Single sign-on: sign-in attempts in flight, and people as rows of api_keys.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_attempts",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("next_path", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_sso_attempts_expires_at", "sso_attempts", ["expires_at"])
    # A unique index, not a constraint: SQLite adds one without rebuilding the table, and
    # both stores let any number of rows (the keys) have NULL.
    op.add_column("api_keys", sa.Column("subject", sa.String(300), nullable=True))
    op.create_index("ix_api_keys_subject", "api_keys", ["subject"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_api_keys_subject", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("subject")
    op.drop_index("ix_sso_attempts_expires_at", "sso_attempts")
    op.drop_table("sso_attempts")
