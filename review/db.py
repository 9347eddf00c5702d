"""The desk's database: an engine for its URL, sessions, and the schema brought up to date by Alembic."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_LOGGER = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Seconds a SQLite writer waits for another's lock: ingest, the outbox and the pages write from their own threads.
SQLITE_BUSY_SECS = 30


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file gets its folder, write-ahead logging and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECS, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    # WAL lets the pages read while ingest writes; SQLite leaves foreign keys unchecked unless asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the desk's migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Brings the schema to the newest migration (creates it in a new database); keeps every row."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    _LOGGER.info("database schema up to date (%s)", engine.url.render_as_string(hide_password=True))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: pages render what they just stored.
    return sessionmaker(engine, expire_on_commit=False)
