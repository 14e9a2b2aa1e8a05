"""Vendor files: bar revisions, quarantine rows per delivery (content hash, minute), import
records with the revised count, content hash and stamp format.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:30:00

Existing rows keep their values: quarantine rows of earlier imports get an empty content hash
(one delivery per file, as before) and no minute. A store adopted from before migrations (tables
made by `create_all` from newer tables) may already have the table and columns: each is added
only where missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "bar_revision" not in inspector.get_table_names():
        _create_revisions()
    present = {c["name"] for c in inspector.get_columns("quarantine")}
    if "content_hash" not in present:
        with op.batch_alter_table("quarantine") as batch:
            batch.add_column(
                sa.Column("content_hash", sa.String(length=64), nullable=False, server_default="")
            )
            batch.add_column(sa.Column("ts", sa.BigInteger(), nullable=True))
            batch.create_index("ix_quarantine_content_hash", ["content_hash"])
    if "revised" not in {c["name"] for c in inspector.get_columns("ingested_file")}:
        with op.batch_alter_table("ingested_file") as batch:
            batch.add_column(sa.Column("revised", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(
                sa.Column("content_hash", sa.String(length=64), nullable=False, server_default="")
            )
            batch.add_column(
                sa.Column("format", sa.String(length=255), nullable=False, server_default="")
            )


def _create_revisions() -> None:
    op.create_table(
        "bar_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("file", sa.String(length=1024), nullable=False),
        sa.Column("replaced_at", TZ_DATETIME, nullable=False),
        sa.Column("replaced_by", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bar_revision_key", "bar_revision", ["symbol", "interval", "ts"])


def downgrade() -> None:
    with op.batch_alter_table("ingested_file") as batch:
        batch.drop_column("format")
        batch.drop_column("content_hash")
        batch.drop_column("revised")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index("ix_quarantine_content_hash")
        batch.drop_column("ts")
        batch.drop_column("content_hash")
    op.drop_index("ix_bar_revision_key", table_name="bar_revision")
    op.drop_table("bar_revision")
