"""Alembic migrations of the store; `models.schema.init_db` applies them (no alembic.ini)."""
