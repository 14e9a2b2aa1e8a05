"""Storage times: when a bar's values were stored, when a revision's values had been stored,
and when a run read each session's repository slice (epoch nanoseconds, UTC).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:10:00

Existing rows keep NULL: a bar or revision stored before this revision counts as stored before
any run that records a read time, and a run from before it falls back to its start time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = {
    "bar": "stored_at",
    "bar_revision": "stored_at",
    "run_session": "read_at",
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, column in COLUMNS.items():
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table, column in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
