"""Alembic's entry: runs the migrations on the connection `review.db.upgrade` hands over, or on the ini's URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from review.models import Base

config = context.config


def run_migrations(connection) -> None:
    # Batch mode: SQLite alters a table by copying it, which Alembic does only in batch operations.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if (connection := config.attributes.get("connection")) is not None:
    run_migrations(connection)
else:
    section = config.get_section(config.config_ini_section, {})
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_migrations(connection)
