"""The one SQLite connection every repository of the store shares: opening (WAL, the page cache,
a quick integrity check, the migrations), a corrupted file moved aside, the read and write
transactions that turn sqlite errors into `StoreError`, and the small `meta` table.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel.store.errors import StoreError, StoreNotFoundError
from sentinel.store.schema import META_SCHEMA_VERSION, MIGRATIONS, RESERVED_META, SCHEMA_VERSION

log = logging.getLogger("sentinel.store")

DB_NAME = "sentinel.db"
BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 4 * 1024 * 1024
# SQLite's page cache per connection, KiB (its default is 2,000). It fills as pages are touched
# and then stays: a slow step of RSS over the first hours. The store is small and written a row
# at a time; the OS page cache serves the rest.
PAGE_CACHE_KIB = 256
# Prepared statements kept per connection (sqlite3's default: 128): ~4 KiB each, more for the
# reads with an IN list of sites, whose every length is a statement of its own, run once. The
# hot ones (a batch's writes) stay kept; at 1,000 sites SQLite then holds ~80 KiB less.
CACHED_STATEMENTS = 32

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def describe(exc: sqlite3.Error) -> str:
    """An sqlite error as the words of a one-line message."""
    return str(exc) or type(exc).__name__


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "file is not a database" in text or "malformed" in text


class Database:
    """One connection to `state_dir/sentinel.db`; get one with `open` or `open_readonly`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(cls, state_dir: str | Path) -> Database:
        """Open (creating if needed) the read-write store. A corrupted file is moved aside."""
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # exist_ok covers directories only: this is a file
            raise StoreError(f"state directory {directory} is not a directory") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StoreError(f"cannot create state directory {directory}: {reason}") from None
        if not directory.is_dir():
            raise StoreError(f"state directory {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"state directory {directory} is not writable")
        path = directory / DB_NAME
        try:
            conn = cls._connect_rw(path)
        except sqlite3.Error as exc:
            if not _is_corruption(exc):
                raise StoreError(f"cannot open state store {path}: {describe(exc)}") from None
            aside = cls._move_aside(path, describe(exc))
            log.error(
                "state store %s was corrupted (%s); moved it to %s and started a fresh one: "
                "open incidents and pending emails in it are lost",
                path,
                describe(exc),
                aside,
            )
            try:
                conn = cls._connect_rw(path)
            except sqlite3.Error as exc2:
                raise StoreError(f"cannot open state store {path}: {describe(exc2)}") from None
        return cls(conn, path)

    @staticmethod
    def _connect_rw(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            cached_statements=CACHED_STATEMENTS,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("state store %s: WAL mode unavailable (journal_mode=%s)", path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            # After a checkpoint the WAL file is truncated back to at most this (it is reused, not
            # shrunk, otherwise): a burst of writes cannot leave a large file behind for months.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys = ON")
            check = conn.execute("PRAGMA quick_check").fetchall()
            if [tuple(row) for row in check] != [("ok",)]:
                detail = "; ".join(str(row[0]) for row in check[:3])
                raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")
            Database._migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _move_aside(path: Path, reason: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        try:
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise StoreError(
                f"state store {path} is corrupted ({reason}) and cannot be moved aside: "
                f"{exc.strerror or exc}"
            ) from None
        return aside

    @staticmethod
    def _migrate(conn: sqlite3.Connection, path: Path) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(MIGRATIONS[0][0])  # meta exists before its version can be read
            row = conn.execute(
                "SELECT value FROM meta WHERE key = ?", (META_SCHEMA_VERSION,)
            ).fetchone()
            version = int(row[0]) if row is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state store {path} has schema version {version}, newer than this "
                    f"sentinel understands ({SCHEMA_VERSION}); upgrade sentinel"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step][1 if step == 0 else 0 :]:
                    conn.execute(statement)
            # One line: a new store is created, an older one migrated (from and to).
            if version == 0:
                log.info("state store %s created (schema version %d)", path, SCHEMA_VERSION)
            elif version < SCHEMA_VERSION:
                log.info(
                    "state store %s migrated from schema version %d to %d",
                    path,
                    version,
                    SCHEMA_VERSION,
                )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (META_SCHEMA_VERSION, str(SCHEMA_VERSION)),
            )
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    @classmethod
    def open_readonly(cls, state_dir: str | Path) -> Database:
        """Open for reading only (`sentinel status`); works while the daemon holds it open."""
        path = Path(state_dir) / DB_NAME
        if not path.is_file():
            raise StoreNotFoundError(f"no state store at {path} (has `sentinel run` run yet?)")
        uri = path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            row = conn.execute(
                "SELECT value FROM meta WHERE key = ?", (META_SCHEMA_VERSION,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state store {path}: {describe(exc)}") from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"state store {path} has an unknown schema version")
        return cls(conn, path, readonly=True)

    def close(self) -> None:
        """Close the connection (a clean close also checkpoints the WAL)."""
        try:
            self.conn.close()
        except sqlite3.Error as exc:
            log.warning("closing state store %s: %s", self.path, describe(exc))

    # ------------------------------------------------------------------ reads and writes

    @contextmanager
    def errors(self, what: str) -> Iterator[sqlite3.Connection]:
        """Yields the connection for reads; sqlite errors -> StoreError."""
        try:
            yield self.conn
        except sqlite3.Error as exc:
            raise StoreError(f"state store {what}: {describe(exc)}") from None

    @contextmanager
    def transaction(self, what: str = "write") -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; sqlite errors -> StoreError."""
        with self.errors(what):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error as exc:  # e.g. SQLite already rolled back after SQLITE_FULL
                    log.debug("rollback: %s", describe(exc))
                raise

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One read; sqlite errors -> StoreError."""
        with self.errors("read") as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    def data_version(self) -> int:
        """SQLite's data_version: changes when another connection (the CLI: `sentinel silence`,
        `sentinel outbox retry`) committed a write; this connection's own writes leave it. No I/O.
        """
        with self.errors("read") as conn:
            (version,) = conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A small value stored under `key`, or None."""
        with self.errors("read") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value under `key` (the store's own keys are refused)."""
        if key in RESERVED_META:
            raise ValueError(f"meta key {key!r} belongs to the store")
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
