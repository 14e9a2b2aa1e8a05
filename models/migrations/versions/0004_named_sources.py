"""Named sources: bars keyed by (symbol, interval, ts, source); discrepancies between sources.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:20:00

`bar.source` held the file a bar came from: that moves to `bar.origin`, and every existing bar
(imported and materialised alike) belongs to the source `default`, so readers that ask for
`default` see exactly what they saw before. Quarantine and import records, run bars and
session metrics say which source they concern, a run's sessions the source they are rebuilt
from (`run_session.source`, `default` for earlier runs); `discrepancy` holds each minute
where the feed and a backfill source disagree. Data is kept on SQLite (batch mode) and PostgreSQL.

A store adopted from before migrations (tables made by `create_all` from newer tables) may
already have the new shape: only what is missing is added.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT = "default"
BAR_KEY = ["symbol", "interval", "ts", "source"]


def _source_column() -> sa.Column:
    return sa.Column("source", sa.String(length=64), nullable=False, server_default=DEFAULT)


def _add_missing(table: str, columns: list[sa.Column]) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    missing = [c for c in columns if c.name not in present]
    if missing:
        with op.batch_alter_table(table) as batch:
            for column in missing:
                batch.add_column(column)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "origin" not in {c["name"] for c in inspector.get_columns("bar")}:
        _move_bars_to_default(bind)
    for table in ("quarantine", "ingested_file"):
        _add_missing(table, [_source_column()])
    _add_missing(
        "run_bar", [sa.Column("source", sa.String(length=64), nullable=False, server_default="")]
    )
    _add_missing("run_session", [_source_column()])
    _add_missing(
        "session_metric",
        [
            sa.Column("feed_gaps", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("discrepancies", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("sources", sa.Text(), nullable=False, server_default="{}"),
        ],
    )
    if "discrepancy" not in inspector.get_table_names():
        _create_discrepancy()


def _move_bars_to_default(bind: sa.Connection) -> None:
    """`source` (the file) moves to `origin`; every bar belongs to `default`; the key widens."""
    with op.batch_alter_table("bar") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(length=255), nullable=False, server_default="")
        )
    op.execute(sa.text("UPDATE bar SET origin = source"))
    op.execute(sa.text("UPDATE bar SET source = :name").bindparams(name=DEFAULT))
    if bind.dialect.name == "sqlite":
        # SQLite's primary key is unnamed: recreate the table with the wider key (SQLAlchemy
        # warns that the copy's key differs from the reflected one: that is the point).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            with op.batch_alter_table("bar", recreate="always") as batch:
                batch.alter_column("source", type_=sa.String(length=64), existing_nullable=False)
                batch.create_primary_key("pk_bar", BAR_KEY)
    else:
        op.drop_constraint("bar_pkey", "bar", type_="primary")
        op.alter_column("bar", "source", type_=sa.String(length=64), existing_nullable=False)
        op.create_primary_key("bar_pkey", "bar", BAR_KEY)


def _create_discrepancy() -> None:
    op.create_table(
        "discrepancy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("feed_source", sa.String(length=255), nullable=False),
        sa.Column("backfill_source", sa.String(length=64), nullable=False),
        sa.Column("kept", sa.String(length=16), nullable=False),
        *(
            sa.Column(f"{side}_{name}", sa.Float(), nullable=False)
            for side in ("feed", "backfill")
            for name in ("open", "high", "low", "close", "volume")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_discrepancy_run_id", "discrepancy", ["run_id"])


def downgrade() -> None:
    """Back to one source: bars of sources other than `default` are dropped."""
    op.drop_index("ix_discrepancy_run_id", table_name="discrepancy")
    op.drop_table("discrepancy")
    with op.batch_alter_table("session_metric") as batch:
        for name in ("sources", "discrepancies", "feed_gaps"):
            batch.drop_column(name)
    for table in ("run_session", "run_bar", "ingested_file", "quarantine"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source")
    op.execute(sa.text("DELETE FROM bar WHERE source <> :name").bindparams(name=DEFAULT))
    op.execute(sa.text("UPDATE bar SET source = origin"))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("bar", recreate="always") as batch:
            batch.drop_column("origin")
            batch.alter_column("source", type_=sa.String(length=255), existing_nullable=False)
    else:
        op.drop_constraint("bar_pkey", "bar", type_="primary")
        op.drop_column("bar", "origin")
        op.alter_column("bar", "source", type_=sa.String(length=255), existing_nullable=False)
        op.create_primary_key("bar_pkey", "bar", ["symbol", "interval", "ts"])
