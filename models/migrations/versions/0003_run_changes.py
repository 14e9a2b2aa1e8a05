"""Runs record what they changed: run_bar keyed by session; run_session and run_source tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 19:20:00

Existing runs keep their full copies in run_bar and still export as before (a session with no
run_session row is read as a full copy). A store adopted from before migrations (tables made by
`create_all` from newer tables) may already have the new tables: they are made only if missing.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PRICES = ("open", "high", "low", "close", "volume")


KEY = ("run_id", "session", "symbol", "interval", "ts")
OLD_KEY = ("run_id", "symbol", "interval", "ts")


def upgrade() -> None:
    bind = op.get_bind()
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("run_bar")}
    if "ix_run_bar_session" in indexes:
        op.drop_index("ix_run_bar_session", table_name="run_bar")
    _rekey("run_bar", KEY, nullable=True)
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "run_session" not in present:
        _create_run_session()
    if "run_source" not in present:
        _create_run_source()


def _create_run_session() -> None:
    op.create_table(
        "run_session",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("calendar", sa.String(length=32), nullable=False),
        sa.Column("extended_hours", sa.Boolean(), nullable=False),
        sa.Column("anchor", sa.String(length=16), nullable=False),
        sa.Column("derived", sa.String(length=255), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("run_id", "session"),
    )


def _create_run_source() -> None:
    op.create_table(
        "run_source",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("run_id", "session", "symbol"),
    )


def downgrade() -> None:
    op.drop_table("run_source")
    op.drop_table("run_session")
    op.execute("DELETE FROM run_bar WHERE open IS NULL")  # changes have no full-copy meaning
    _rekey("run_bar", OLD_KEY, nullable=False)
    op.create_index("ix_run_bar_session", "run_bar", ["run_id", "session", "symbol", "interval"])


def _rekey(table: str, key: tuple[str, ...], *, nullable: bool) -> None:
    """Set the primary key and the prices' nullability; SQLite rebuilds the table WITHOUT ROWID
    (keeping its rows), PostgreSQL alters it in place."""
    bind = op.get_bind()
    name = sa.inspect(bind).get_pk_constraint(table).get("name") or f"{table}_pkey"
    if bind.dialect.name == "sqlite":
        # The copy is reflected with the old key's primary_key flags; SQLAlchemy warns, then
        # takes the new key, which is what the rebuilt table gets.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Table '_alembic_tmp_", sa.exc.SAWarning)
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_with_rowid": not nullable}
            ) as batch:
                for column in PRICES:
                    batch.alter_column(column, existing_type=sa.Float(), nullable=nullable)
                batch.create_primary_key(f"{table}_pkey", list(key))
        return
    op.drop_constraint(name, table, type_="primary")
    op.create_primary_key(f"{table}_pkey", table, list(key))
    for column in PRICES:
        op.alter_column(table, column, existing_type=sa.Float(), nullable=nullable)
