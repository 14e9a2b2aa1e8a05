"""Completeness beside bar_quality: source bars, completeness, feed counts and `no_data`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:10:00

Existing rows keep their figures; `completeness` stays NULL for runs recorded before it
existed (their source bars were never counted).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("source_bars", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("completeness", sa.Float(), nullable=True),
    sa.Column("feed_missing_bars", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("feed_gap_runs", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("no_data", sa.Boolean(), nullable=False, server_default=sa.false()),
)


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("session_metric")}
    missing = [c for c in COLUMNS if c.name not in present]
    if missing:
        with op.batch_alter_table("session_metric") as batch:
            for column in missing:
                batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("session_metric") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
