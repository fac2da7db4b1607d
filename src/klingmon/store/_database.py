"""Opening a database: URL resolution, SQLite pragmas, migrations to head.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writes, so that two writers
queue on the busy timeout instead of failing halfway through a transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import platformdirs
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from klingmon.errors import StoreError
from klingmon.store._dialect import dialect_of

__all__ = [
    "WRITE",
    "check_file",
    "create_store_engine",
    "default_url",
    "masked",
    "migrate",
    "resolve_url",
    "revisions",
    "sqlite_file",
]

log = logging.getLogger(__name__)

#: Execution option that marks a connection whose transactions write.
WRITE = "klingmon_write"
_MIGRATIONS = Path(__file__).parent / "migrations"
_BUSY_TIMEOUT_MS = 10_000
# An arbitrary constant: the advisory lock that serialises concurrent migrations on PG.
_PG_MIGRATION_LOCK = 0x6B6C6E67


def default_url() -> str:
    """A SQLite file in the user data directory (created on demand)."""
    directory = Path(platformdirs.user_data_dir("klingmon"))
    return f"sqlite:///{directory / 'klingmon.db'}"


def sqlite_file(url: URL) -> str | None:
    """The SQLite file ``url`` names; None for another database or one in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def resolve_url(url: str | None) -> URL:
    """Accept None (the default file), a SQLAlchemy URL, or a plain file path."""
    text = default_url() if url is None else url
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().absolute()}"
    try:
        parsed = make_url(text)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {masked_text(text)}") from exc
    path = sqlite_file(parsed)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return parsed


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def masked_text(text: str) -> str:
    """Best effort for a string that may not parse: drop anything before an ``@``."""
    scheme, _, rest = text.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else text


def create_store_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {}
    if sqlite_file(url) is None:
        # One shared connection: every pool connection would see its own empty database.
        kwargs = {
            "poolclass": StaticPool,
            "connect_args": {"check_same_thread": False},
        }
    engine = sa.create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event (pysqlite's own is broken).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    write = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def check_file(engine: Engine) -> None:
    """Refuse a damaged SQLite file before anything is sent on its word.

    SQLite finds a damaged page only when a statement reads it, which may be after
    the engine has paid for creates it then cannot record. ``PRAGMA quick_check``
    reads every page once (a few tenths of a second for 200 MB) without the slower
    index-content comparison of ``integrity_check``.
    """
    if sqlite_file(engine.url) is None:
        return
    with engine.connect() as conn:
        found = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(1)")]
        conn.rollback()
    if found != ["ok"]:
        lines = [
            line.strip()
            for text in found
            for line in text.splitlines()
            if line.strip() and not line.startswith("***")  # "*** in database main"
        ]
        problem = (lines[0] if lines else "no answer")[:200]
        raise StoreError(
            f"the store {engine.url.database} is damaged ({problem}): restore it "
            "from a backup, or move it aside to start a new one"
        )


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The database's schema revision and the newest this klingmon knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), head


def migrate(engine: Engine) -> None:
    """Bring the schema to head; refuse a database written by a newer klingmon."""
    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        # One migrator at a time (PostgreSQL; SQLite's writers are serial already).
        dialect_of(conn).serialise(conn, _PG_MIGRATION_LOCK)
        current = MigrationContext.configure(conn).get_current_heads()
        if not current:
            # Never klingmon's: creating tables beside someone else's data would
            # mix the two, and a mistyped path should not pass for a new store.
            foreign = sorted(sa.inspect(conn).get_table_names())
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise StoreError(
                    f"{masked(engine.url)} is not a klingmon store: it already holds "
                    f"other tables ({shown}); use a new file or an empty database"
                )
        for revision in current:
            try:
                known = script.get_revision(revision)
            except CommandError:
                known = None
            if known is None:
                raise StoreError(
                    f"the database is at schema revision {revision!r}, newer than this "
                    f"klingmon knows (head {script.get_current_head()!r}); upgrade "
                    "klingmon to use it"
                )
        if tuple(current) != tuple(script.get_heads()):
            log.info(
                "store.migrate",
                extra={"from": list(current), "to": script.get_current_head()},
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
