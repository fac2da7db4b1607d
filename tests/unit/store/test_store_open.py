"""Opening SQLite stores: paths, defaults, pragmas and the refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

import klingmon.store
from klingmon.errors import StoreError
from klingmon.store import NewTask, Store
from klingmon.store._database import masked, resolve_url

if TYPE_CHECKING:
    from pathlib import Path


def test_a_plain_path_is_a_sqlite_file_and_its_folders_are_made(tmp_path: Path):
    """A filesystem path opens a SQLite file, creating missing directories."""
    path = tmp_path / "deep" / "er" / "k.db"
    with Store.open(str(path)) as store:
        assert store.dialect == "sqlite"
        assert store.url == f"sqlite:///{path}"
        assert repr(store) == f"Store(url='sqlite:///{path}')"
    assert path.exists()


def test_the_default_lives_in_the_user_data_dir(tmp_path: Path, monkeypatch):
    """No URL means klingmon.db in platformdirs' user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with Store.open() as store:
        assert (
            store.url == f"sqlite:///{tmp_path / 'data' / 'klingmon' / 'klingmon.db'}"
        )
    assert (tmp_path / "data" / "klingmon" / "klingmon.db").exists()


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path):
    """Every connection gets WAL, NORMAL sync, foreign keys and a 10 s busy timeout."""
    with Store.open(str(tmp_path / "k.db")) as store, store._engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


def test_in_memory_sqlite_shares_one_database(tmp_path: Path):
    """sqlite:// keeps one database for every call (a single shared connection)."""
    with Store.open("sqlite://") as store:
        store.tasks.create_batch("m", [NewTask("/v1/videos/text2video", {})], 1)
        assert len(store.tasks.tasks()) == 1


def test_a_corrupt_file_is_a_store_error(tmp_path: Path):
    """A file that is not SQLite gives StoreError with the path, not a traceback."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StoreError, match="cannot open the store") as info:
        Store.open(str(path))
    assert "junk.db" in str(info.value)


def test_a_directory_is_a_store_error(tmp_path: Path):
    """A path naming a directory cannot be a database file."""
    with pytest.raises(StoreError):
        Store.open(str(tmp_path))


def test_an_unknown_driver_is_a_store_error():
    """A URL for a backend that is not installed is refused cleanly."""
    with pytest.raises(StoreError):
        Store.open("nosuchdb://user:pw@host/db")


def test_passwords_never_show(tmp_path: Path):
    """URLs render with the password masked."""
    url = resolve_url("postgresql+psycopg://user:s3cret@db.example/klingmon")
    assert "s3cret" not in masked(url)
    assert "***" in masked(url)


def test_the_package_exports_its_public_names():
    """__all__ is sorted and complete."""
    names = klingmon.store.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert getattr(klingmon.store, name) is not None
    assert {"Store", "NewTask", "TaskRow", "Observation", "Change"} <= set(names)


def test_writes_are_immediate_transactions(tmp_path: Path):
    """A writer takes SQLite's write lock at BEGIN; a second writer waits on it."""
    with Store.open(str(tmp_path / "k.db")) as store, store._write() as conn:
        assert conn.in_transaction()
        other = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
        with other.connect() as probe:
            probe.exec_driver_sql("PRAGMA busy_timeout = 1")
            with pytest.raises(sa.exc.OperationalError, match="locked"):
                probe.exec_driver_sql("BEGIN IMMEDIATE")
        other.dispose()
