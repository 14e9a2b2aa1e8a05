"""Run owner: the host and process id of a run, to detect runs whose process was killed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:00:00

A store adopted from before migrations (tables made by `create_all` from newer tables) may
already have the columns: they are added only where missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("host", sa.String(length=255), nullable=False, server_default=""),
    sa.Column("pid", sa.Integer(), nullable=True),
)


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("run")}
    missing = [c for c in COLUMNS if c.name not in present]
    if missing:
        with op.batch_alter_table("run") as batch:
            for column in missing:
                batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("pid")
        batch.drop_column("host")
