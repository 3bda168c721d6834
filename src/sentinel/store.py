"""The state store: what must survive a restart, in one SQLite file (`state_dir/sentinel.db`).

Owns the per-site alert states (open incidents), the durable outbox of emails not yet delivered
(bounded by `outbox_limit`), the bounded dead letters, and a small key/value `meta` table (schema
version, counters, other modules' small facts). WAL with synchronous=NORMAL: every committed write
survives a kill -9 of the process. A state change and the emails it causes commit in one
transaction. Every call is one small indexed statement or transaction, cheap enough for the event
loop. Any SQLite failure (full disk, I/O error, locked) surfaces as `StoreError`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import sqlite3
import time
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sentinel.monitor import SiteState
from sentinel.silences import MAX_SILENCES, Silence

__all__ = [
    "DB_NAME",
    "DEAD_LETTER_LIMIT",
    "DEFAULT_OUTBOX_LIMIT",
    "SCHEMA_VERSION",
    "DeadLetter",
    "OutboxItem",
    "Outgoing",
    "Store",
    "StoreError",
    "StoreNotFoundError",
]

log = logging.getLogger("sentinel.store")

DB_NAME = "sentinel.db"
DEFAULT_OUTBOX_LIMIT = 1000
DEAD_LETTER_LIMIT = 100
THREAD_KEEP = 90 * 86400.0  # how long a grouped DOWN's Message-ID is kept for its later emails
BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 4 * 1024 * 1024
# SQLite's page cache per connection, KiB (its default is 2,000). It fills as pages are touched
# and then stays: a slow step of RSS over the first hours. The store is small and written a row
# at a time; the OS page cache serves the rest.
PAGE_CACHE_KIB = 512

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

T = TypeVar("T")

# Keys of `meta` that the store itself owns; set_meta refuses them.
_META_SCHEMA_VERSION = "schema_version"
_META_DROPPED = "outbox_dropped_total"
_RESERVED_META = frozenset({_META_SCHEMA_VERSION, _META_DROPPED})

# Migrations: MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE site_state (
            site TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        # AUTOINCREMENT: an id is never reused, so a stale id held by the sender (of an item the
        # cap dropped meanwhile) can never delete a newer email.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            site TEXT NOT NULL,
            created_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            permanent_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            message BLOB NOT NULL
        )""",
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            site TEXT NOT NULL,
            created_at REAL NOT NULL,
            failed_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL,
            message BLOB NOT NULL
        )""",
    ),
    (
        # A site's latency-drift history (LatencyTracker.dump) and its "slower" warning state
        # (JSON), so a restart neither blinds drift detection for a day nor loses a warning.
        """CREATE TABLE latency_history (
            site TEXT PRIMARY KEY,
            history BLOB NOT NULL,
            warning TEXT,
            saved_at REAL NOT NULL
        )""",
    ),
    (
        # The memory, disk and CPU-steal trends (series and warning state as JSON, keyed
        # "watch:<name>", "disk:<mount>", "steal:cpu"): a restart neither warns again about a
        # continuing trend nor loses the RESOLVED of a warning already sent.
        """CREATE TABLE trend_history (
            key TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            saved_at REAL NOT NULL
        )""",
    ),
    (
        # Run-time silences (`sentinel silence`); site NULL = every site. Expired rows are pruned.
        """CREATE TABLE silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT,
            until REAL NOT NULL,
            reason TEXT NOT NULL,
            created REAL NOT NULL
        )""",
    ),
    (
        # Channels (webhook, apprise, alertmanager besides email): each outbox item and dead
        # letter names its channel (the rows from before are emails), the incident it belongs to
        # (stale reminders collapse), the alert as JSON (what a fallback channel is sent), and
        # whether it was already handed to the fallback channel.
        "ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'",
        "ALTER TABLE outbox ADD COLUMN incident TEXT",
        "ALTER TABLE outbox ADD COLUMN alert TEXT",
        "ALTER TABLE outbox ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE dead_letters ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'",
        "ALTER TABLE dead_letters ADD COLUMN incident TEXT",
        "ALTER TABLE dead_letters ADD COLUMN alert TEXT",
        "CREATE INDEX outbox_by_channel ON outbox (channel, site, id)",
    ),
    (
        # A heartbeat's state (sentinel.heartbeats.state.HeartbeatState as JSON): its last ping,
        # last output and open incident survive a restart.
        """CREATE TABLE heartbeat_state (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
    (
        # History (sentinel.history): hourly and daily rollups and the incident log. Sites by a
        # small id, times as integer hour/day numbers and milliseconds, the latency histogram as
        # sparse bytes: ~40 bytes a row keeps a site under 64 KiB at full retention.
        """CREATE TABLE history_site (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        )""",
        """CREATE TABLE history_hour (
            site INTEGER NOT NULL,
            period INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            covered_ms INTEGER NOT NULL,
            down_ms INTEGER NOT NULL,
            lat_max_us INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (site, period)
        ) WITHOUT ROWID""",
        """CREATE TABLE history_day (
            site INTEGER NOT NULL,
            period INTEGER NOT NULL,
            probes INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            covered_ms INTEGER NOT NULL,
            down_ms INTEGER NOT NULL,
            lat_max_us INTEGER NOT NULL,
            hist BLOB NOT NULL,
            PRIMARY KEY (site, period)
        ) WITHOUT ROWID""",
        """CREATE TABLE history_incident (
            site INTEGER NOT NULL,
            started_ms INTEGER NOT NULL,
            ended_ms INTEGER,
            first_reason TEXT NOT NULL,
            first_message TEXT NOT NULL,
            last_reason TEXT NOT NULL,
            last_message TEXT NOT NULL,
            alerts INTEGER NOT NULL,
            PRIMARY KEY (site, started_ms)
        ) WITHOUT ROWID""",
    ),
    (
        # Outage grouping (sentinel.notify.grouping): a DOWN or RECOVERED waits group_wait in the
        # outbox with `hold` = its grouping key (the host); a group replaces its items in one
        # transaction. outbox_threads: the email an incident's DOWN went out in (a group's), so
        # its reminders and RECOVERED reply to that email.
        "ALTER TABLE outbox ADD COLUMN hold TEXT",
        """CREATE TABLE outbox_threads (
            channel TEXT NOT NULL,
            incident TEXT NOT NULL,
            root TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (channel, incident)
        ) WITHOUT ROWID""",
    ),
    (
        # The sender looks for held items before every send: without this (partial, so tiny)
        # index that look read the whole outbox, messages included (2 ms with 500 queued).
        "CREATE INDEX outbox_held ON outbox (channel, id) WHERE hold IS NOT NULL",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The state store cannot be opened, read or written. The message is one human-readable line."""


class StoreNotFoundError(StoreError):
    """`open_readonly` found no database: the daemon has not run with this state_dir yet."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An email to enqueue: `message` is `EmailMessage.as_bytes(policy=email.policy.SMTP)`."""

    kind: str
    site: str
    message: bytes
    created_at: float
    channel: str = "email"
    incident: str | None = None
    alert: str | None = None  # the alert as JSON (sentinel.notify.payload), for a fallback
    # Outage grouping: not sent before hold_until, and groupable under the key `hold` until then.
    hold_until: float | None = None
    hold: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A pending email. `due` is whether next_attempt_at had passed at the `now` it was read."""

    id: int
    kind: str
    site: str
    created_at: float
    next_attempt_at: float
    attempts: int  # failed attempts so far (transient and permanent)
    permanent_failures: int
    last_error: str | None
    message: bytes
    due: bool
    channel: str = "email"
    incident: str | None = None
    alert: str | None = None
    escalated: bool = False
    hold: str | None = None  # waiting to be grouped (sentinel.notify.grouping), under this key


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An email given up on (permanent failures); only the latest DEAD_LETTER_LIMIT are kept."""

    id: int
    kind: str
    site: str
    created_at: float
    failed_at: float
    attempts: int
    error: str
    message: bytes
    channel: str = "email"
    incident: str | None = None
    alert: str | None = None


@dataclass(frozen=True, slots=True)
class LatencyHistory:
    """One site's saved latency-drift state: `history` from LatencyTracker.dump, `warning` its
    WarningState as JSON (None: no warning state worth keeping)."""

    site: str
    history: bytes
    warning: str | None
    saved_at: float


# ---------------------------------------------------------------------------- SiteState <-> JSON


def _to_json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    return value


def encode_state(state: SiteState) -> str:
    """SiteState -> JSON text (Status by value, recent results as a list of objects)."""
    return encode_dataclass(state)


def _from_json_value(value: object, hint: Any, where: str) -> object:
    """Convert decoded JSON to `hint` (the few types SiteState uses), or raise ValueError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_json_value(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{where}: unexpected null")
    if origin is typing.Literal:
        if value in typing.get_args(hint) and isinstance(value, str | int):
            return value
        raise ValueError(f"{where}: unknown value {value!r}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list) or len(args) != 2 or args[1] is not Ellipsis:
            raise ValueError(f"{where}: expected a list")
        return tuple(_from_json_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{where}: unknown value {value!r}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        return _build_dataclass(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise ValueError(f"{where}: unsupported field type {hint!r}")
    raise ValueError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")


def _build_dataclass(cls: type[Any], data: dict[str, object], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:  # missing: the field's default (an older version did not write it)
            kwargs[f.name] = _from_json_value(data[f.name], hints[f.name], f"{where}.{f.name}")
    try:
        return cls(**kwargs)  # unknown keys (a newer version's fields) are ignored
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def encode_dataclass(value: object) -> str:
    """A dataclass of the types SiteState uses (plus Literal) -> JSON text."""
    return json.dumps(_to_json_value(value), separators=(",", ":"), allow_nan=True)


def _json_object(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def decode_dataclass(cls: type[T], text: str) -> T:
    """JSON text from `encode_dataclass` -> `cls`; raises ValueError for anything else."""
    value = _build_dataclass(cls, _json_object(text), cls.__name__)
    assert isinstance(value, cls)
    return value


def decode_state(site: str, text: str) -> SiteState:
    """JSON text -> SiteState; raises ValueError for anything that is not a valid state."""
    data = _json_object(text)
    data["site"] = site  # the row's key is the truth
    state = _build_dataclass(SiteState, data, "state")
    assert isinstance(state, SiteState)
    return state


# ---------------------------------------------------------------------------- the store

_ITEM_COLUMNS = (
    "id, kind, site, created_at, next_attempt_at, attempts, permanent_failures, last_error,"
    " message, channel, incident, alert, escalated, hold"
)


def _outbox_item(row: Sequence[Any], now: float) -> OutboxItem:
    next_attempt_at = float(row[4])
    return OutboxItem(
        id=int(row[0]),
        kind=str(row[1]),
        site=str(row[2]),
        created_at=float(row[3]),
        next_attempt_at=next_attempt_at,
        attempts=int(row[5]),
        permanent_failures=int(row[6]),
        last_error=None if row[7] is None else str(row[7]),
        message=bytes(row[8]),
        due=next_attempt_at <= now,
        channel=str(row[9]),
        incident=None if row[10] is None else str(row[10]),
        alert=None if row[11] is None else str(row[11]),
        escalated=bool(row[12]),
        hold=None if row[13] is None else str(row[13]),
    )


def _describe(exc: sqlite3.Error) -> str:
    return str(exc) or type(exc).__name__


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "file is not a database" in text or "malformed" in text


class Store:
    """One SQLite connection to `state_dir/sentinel.db`; get one with `open` or `open_readonly`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        readonly: bool = False,
    ) -> None:
        if outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        self._conn = conn
        self.path = path
        self.outbox_limit = outbox_limit
        self.readonly = readonly
        self._data_version: int | None = None

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(cls, state_dir: str | Path, *, outbox_limit: int = DEFAULT_OUTBOX_LIMIT) -> Store:
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
                raise StoreError(f"cannot open state store {path}: {_describe(exc)}") from None
            aside = cls._move_aside(path, _describe(exc))
            log.error(
                "state store %s was corrupted (%s); moved it to %s and started a fresh one: "
                "open incidents and pending emails in it are lost",
                path,
                _describe(exc),
                aside,
            )
            try:
                conn = cls._connect_rw(path)
            except sqlite3.Error as exc2:
                raise StoreError(f"cannot open state store {path}: {_describe(exc2)}") from None
        return cls(conn, path, outbox_limit=outbox_limit)

    @staticmethod
    def _connect_rw(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
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
            Store._migrate(conn, path)
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
                "SELECT value FROM meta WHERE key = ?", (_META_SCHEMA_VERSION,)
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
                log.info("state store %s migrated to schema version %d", path, step + 1)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (_META_SCHEMA_VERSION, str(SCHEMA_VERSION)),
            )
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    @classmethod
    def open_readonly(cls, state_dir: str | Path) -> Store:
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
                "SELECT value FROM meta WHERE key = ?", (_META_SCHEMA_VERSION,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state store {path}: {_describe(exc)}") from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"state store {path} has an unknown schema version")
        return cls(conn, path, readonly=True)

    def close(self) -> None:
        """Close the connection (a clean close also checkpoints the WAL)."""
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            log.warning("closing state store %s: %s", self.path, _describe(exc))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"state store {what}: {_describe(exc)}") from None

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; sqlite errors -> StoreError."""
        with self._errors(what):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error as exc:  # e.g. SQLite already rolled back after SQLITE_FULL
                    log.debug("rollback: %s", _describe(exc))
                raise

    # ------------------------------------------------------------------ site states

    def load_states(self) -> dict[str, SiteState]:
        """Every saved site state; a row that cannot be decoded is skipped with a warning."""
        with self._errors("read"):
            rows = self._conn.execute("SELECT site, data FROM site_state ORDER BY site").fetchall()
        states: dict[str, SiteState] = {}
        for site, data in rows:
            try:
                states[site] = decode_state(str(site), str(data))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable saved state of site %r: %s", site, exc)
        return states

    def save_state(self, state: SiteState | None, outgoing: Sequence[Outgoing] = ()) -> None:
        """Write `state` and enqueue `outgoing` in one transaction: both happen or neither.
        `state` None only enqueues (emails not tied to a site's incident, e.g. early warnings)."""
        dropped = 0
        with self._transaction("write") as conn:
            if state is not None:
                conn.execute(
                    "INSERT INTO site_state (site, data, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(site) DO UPDATE SET data = excluded.data,"
                    " updated_at = excluded.updated_at",
                    (state.site, encode_state(state), time.time()),
                )
            if outgoing:
                conn.executemany(
                    "INSERT INTO outbox (kind, site, created_at, next_attempt_at, message,"
                    " channel, incident, alert, hold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            o.kind,
                            o.site,
                            o.created_at,
                            o.created_at if o.hold_until is None else o.hold_until,
                            o.message,
                            o.channel,
                            o.incident,
                            o.alert,
                            None if o.hold_until is None else (o.hold or ""),
                        )
                        for o in outgoing
                    ],
                )
                dropped = self._enforce_limit(conn)
        if dropped:
            log.warning(
                "outbox full (%d emails): dropped the %d oldest undelivered email(s)",
                self.outbox_limit,
                dropped,
            )

    def _enforce_limit(self, conn: sqlite3.Connection) -> int:
        (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        excess = int(count) - self.outbox_limit
        if excess <= 0:
            return 0
        conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(CAST(meta.value AS INTEGER) + ? AS TEXT)",
            (_META_DROPPED, str(excess), excess),
        )
        return excess

    def delete_site(self, name: str) -> None:
        """Forget a site's state (it left the config). Its pending emails still go out."""
        with self._transaction("write") as conn:
            conn.execute("DELETE FROM site_state WHERE site = ?", (name,))
            conn.execute("DELETE FROM latency_history WHERE site = ?", (name,))

    # ------------------------------------------------------------------ latency history

    def save_latency_history(self, rows: Sequence[LatencyHistory]) -> None:
        """Upsert some sites' latency histories in one transaction (the caller chunks them, so
        no single write holds the event loop for long)."""
        with self._transaction("write") as conn:
            conn.executemany(
                "INSERT INTO latency_history (site, history, warning, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(site) DO UPDATE SET history = excluded.history,"
                " warning = excluded.warning, saved_at = excluded.saved_at",
                [(r.site, r.history, r.warning, r.saved_at) for r in rows],
            )

    def load_latency_history(self) -> dict[str, LatencyHistory]:
        with self._errors("read"):
            rows = self._conn.execute(
                "SELECT site, history, warning, saved_at FROM latency_history"
            ).fetchall()
        return {
            site: LatencyHistory(site, bytes(history), warning, float(saved_at))
            for site, history, warning, saved_at in rows
        }

    def forget_latency_history(self, keep: Collection[str]) -> int:
        """Drop the histories of sites not in `keep` (removed while sentinel was stopped, or
        with latency_drift turned off); returns how many were dropped."""
        with self._transaction("write") as conn:
            names = [r[0] for r in conn.execute("SELECT site FROM latency_history")]
            gone = [(n,) for n in names if n not in keep]
            conn.executemany("DELETE FROM latency_history WHERE site = ?", gone)
        return len(gone)

    # ------------------------------------------------------------------ trend history

    def replace_trend_history(self, rows: Mapping[str, str], saved_at: float) -> None:
        """Make the saved trends exactly `rows` (key -> JSON), in one transaction: a trend no
        longer watched is dropped with the same write."""
        with self._transaction("write") as conn:
            conn.executemany(
                "INSERT INTO trend_history (key, data, saved_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET data = excluded.data,"
                " saved_at = excluded.saved_at",
                [(key, data, saved_at) for key, data in rows.items()],
            )
            names = [r[0] for r in conn.execute("SELECT key FROM trend_history")]
            conn.executemany(
                "DELETE FROM trend_history WHERE key = ?", [(n,) for n in names if n not in rows]
            )

    def load_trend_history(self) -> dict[str, str]:
        """key -> the JSON saved by `replace_trend_history`."""
        with self._errors("read"):
            rows = self._conn.execute("SELECT key, data FROM trend_history").fetchall()
        return {str(key): str(data) for key, data in rows}

    # ------------------------------------------------------------------ heartbeats

    def save_heartbeat(self, name: str, data: str, outgoing: Sequence[Outgoing] = ()) -> None:
        """Write a heartbeat's state (JSON text) and enqueue its emails in one transaction."""
        dropped = 0
        with self._transaction("write") as conn:
            conn.execute(
                "INSERT INTO heartbeat_state (name, data, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET data = excluded.data,"
                " updated_at = excluded.updated_at",
                (name, data, time.time()),
            )
            if outgoing:
                conn.executemany(
                    "INSERT INTO outbox (kind, site, created_at, next_attempt_at, message)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(o.kind, o.site, o.created_at, o.created_at, o.message) for o in outgoing],
                )
                dropped = self._enforce_limit(conn)
        if dropped:
            log.warning("outbox full: dropped the %d oldest undelivered email(s)", dropped)

    def load_heartbeats(self) -> dict[str, str]:
        """Every saved heartbeat state: name -> JSON text."""
        with self._errors("read"):
            rows = self._conn.execute("SELECT name, data FROM heartbeat_state").fetchall()
        return {str(name): str(data) for name, data in rows}

    def forget_heartbeats(self, keep: Collection[str]) -> int:
        """Drop the states of heartbeats not in `keep` (they left the config)."""
        with self._transaction("write") as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM heartbeat_state")]
            gone = [(n,) for n in names if n not in keep]
            conn.executemany("DELETE FROM heartbeat_state WHERE name = ?", gone)
        return len(gone)

    # ------------------------------------------------------------------ outbox

    def outbox_next(self, now: float, *, exclude: Collection[int] = ()) -> OutboxItem | None:
        """The oldest pending email (delivery is in order), due or not; None if none is pending.
        Ids in `exclude` (delivered, but their deletion failed) are skipped."""
        skip = sorted(exclude)
        where = f" WHERE id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._errors("read"):
            row = self._conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox{where} ORDER BY id LIMIT 1", skip
            ).fetchone()
        return None if row is None else _outbox_item(row, now)

    def outbox_heads(
        self, channel: str, now: float, *, exclude: Collection[int] = (), limit: int = 1000
    ) -> list[OutboxItem]:
        """The oldest pending item of each site on `channel`, oldest first: delivery keeps the
        order per site and channel, and one site's failing item does not hold back another's."""
        skip = sorted(exclude)
        also = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._errors("read"):
            rows = self._conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE id IN (SELECT min(id) FROM outbox"
                f" WHERE channel = ?{also} GROUP BY site) ORDER BY id LIMIT ?",
                (channel, *skip, limit),
            ).fetchall()
        return [_outbox_item(row, now) for row in rows]

    def outbox_later_kinds(self, item: OutboxItem) -> list[str]:
        """The kinds of the items after `item` for the same channel, site and incident."""
        if item.incident is None:
            return []
        with self._errors("read"):
            rows = self._conn.execute(
                "SELECT kind FROM outbox WHERE channel = ? AND site = ? AND incident = ?"
                " AND id > ? ORDER BY id LIMIT 100",
                (item.channel, item.site, item.incident, item.id),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def outbox_unescalated(
        self, channel: str, site: str, created_before: float
    ) -> list[OutboxItem]:
        """Items of `channel` and `site` created before `created_before` and not yet handed to
        a fallback channel (at most 100, oldest first)."""
        with self._errors("read"):
            rows = self._conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE channel = ? AND site = ?"
                " AND escalated = 0 AND created_at < ? ORDER BY id LIMIT 100",
                (channel, site, created_before),
            ).fetchall()
        return [_outbox_item(row, created_before) for row in rows]

    def outbox_escalate(self, item_id: int, copies: Sequence[Outgoing]) -> None:
        """Mark the item as handed to its fallback and enqueue the fallback's copy, at once."""
        with self._transaction("write") as conn:
            conn.execute("UPDATE outbox SET escalated = 1 WHERE id = ?", (item_id,))
        if copies:
            self.save_state(None, copies)

    def outbox_items(self, limit: int = 1000) -> list[OutboxItem]:
        """Every pending item, oldest first (for `sentinel outbox list`)."""
        with self._errors("read"):
            rows = self._conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [_outbox_item(row, time.time()) for row in rows]

    # ------------------------------------------------------------------ outage grouping

    def outbox_held(self, channel: str, limit: int = 1000) -> list[OutboxItem]:
        """The items of `channel` still waiting to be grouped, oldest first."""
        with self._errors("read"):
            rows = self._conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE channel = ? AND hold IS NOT NULL"
                " ORDER BY id LIMIT ?",
                (channel, limit),
            ).fetchall()
        return [_outbox_item(row, time.time()) for row in rows]

    def outbox_release(
        self,
        ids: Collection[int],
        *,
        merged: tuple[bytes, str | None, str] | None = None,
        roots: Mapping[str, str] | None = None,
        now: float,
    ) -> None:
        """End the wait of the items `ids` (of one channel), in one transaction. With `merged`
        (message, alert JSON, group id) they become one item: the oldest is rewritten, the
        others deleted. `roots` (incident -> Message-ID of the email it went out in) is kept,
        so later emails of those incidents reply to it."""
        ordered = sorted(ids)
        if not ordered:
            return
        marks = ", ".join("?" * len(ordered))
        with self._transaction("write") as conn:
            channel_row = conn.execute(
                "SELECT channel FROM outbox WHERE id = ?", (ordered[0],)
            ).fetchone()
            if merged is None:
                # Due now (the wait may have been shortened by a reload or a restart).
                conn.execute(
                    "UPDATE outbox SET hold = NULL, next_attempt_at = min(next_attempt_at, ?)"
                    f" WHERE id IN ({marks})",
                    (now, *ordered),
                )
            else:
                message, alert, group = merged
                conn.execute(
                    "UPDATE outbox SET hold = NULL, message = ?, alert = ?, incident = ?,"
                    " next_attempt_at = min(next_attempt_at, ?) WHERE id = ?",
                    (message, alert, group, now, ordered[0]),
                )
                rest = ordered[1:]
                if rest:
                    conn.execute(
                        f"DELETE FROM outbox WHERE id IN ({', '.join('?' * len(rest))})", rest
                    )
            if roots and channel_row is not None:
                conn.executemany(
                    "INSERT OR REPLACE INTO outbox_threads (channel, incident, root, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(channel_row[0], inc, root, now) for inc, root in roots.items()],
                )
                conn.execute(
                    "DELETE FROM outbox_threads WHERE created_at < ?", (now - THREAD_KEEP,)
                )

    def outbox_thread_roots(self, channel: str, incidents: Collection[str]) -> dict[str, str]:
        """incident -> the Message-ID of the (grouped) email its DOWN went out in."""
        wanted = sorted(set(incidents))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        with self._errors("read"):
            rows = self._conn.execute(
                f"SELECT incident, root FROM outbox_threads WHERE channel = ?"
                f" AND incident IN ({marks})",
                (channel, *wanted),
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def data_version(self) -> int:
        """Changes when another connection (e.g. `sentinel outbox retry`) committed a write."""
        with self._errors("read"):
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def outbox_done(self, item_id: int) -> None:
        """The email was delivered: remove it."""
        with self._transaction("write") as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def outbox_retry_later(
        self, item_id: int, next_attempt_at: float, error: str, *, permanent: bool = False
    ) -> None:
        """Record a failed attempt and when to try again."""
        with self._transaction("write") as conn:
            conn.execute(
                "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1,"
                " permanent_failures = permanent_failures + ?, last_error = ? WHERE id = ?",
                (next_attempt_at, 1 if permanent else 0, error, item_id),
            )

    def outbox_give_up(self, item_id: int, error: str, *, now: float | None = None) -> None:
        """Move the email to the dead letters (only the latest DEAD_LETTER_LIMIT are kept)."""
        with self._transaction("write") as conn:
            conn.execute(
                "INSERT INTO dead_letters (kind, site, created_at, failed_at, attempts, error,"
                " message, channel, incident, alert) SELECT kind, site, created_at, ?,"
                " attempts + 1, ?, message, channel, incident, alert FROM outbox WHERE id = ?",
                (time.time() if now is None else now, error, item_id),
            )
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
            conn.execute(
                "DELETE FROM dead_letters WHERE id <= "
                "(SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (DEAD_LETTER_LIMIT,),
            )

    def outbox_pending(self) -> int:
        """How many emails wait to be (re)sent."""
        with self._errors("read"):
            (count,) = self._conn.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

    def outbox_dropped_total(self) -> int:
        """Emails dropped because the outbox was full, over the store's whole life."""
        value = self.get_meta(_META_DROPPED)
        return int(value) if value is not None else 0

    def dead_letter_count(self) -> int:
        """How many dead letters are kept (the `sentinel_dead_letters` gauge)."""
        with self._errors("read"):
            (count,) = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        return int(count)

    def dead_letter_retry(self, ids: Collection[int] | None, *, now: float) -> list[int]:
        """Move dead letters (`ids`, or all when None) back into the outbox, due now and with
        fresh attempts; returns the ids moved. One transaction: safe beside a running daemon."""
        with self._transaction("write") as conn:
            if ids is None:
                found = [int(r[0]) for r in conn.execute("SELECT id FROM dead_letters ORDER BY id")]
            else:
                found = [
                    int(r[0])
                    for i in sorted(set(ids))
                    for r in conn.execute("SELECT id FROM dead_letters WHERE id = ?", (i,))
                ]
            for dead_id in found:
                # escalated = 1: the fallback channel already had its copy.
                conn.execute(
                    "INSERT INTO outbox (kind, site, created_at, next_attempt_at, message,"
                    " channel, incident, alert, escalated) SELECT kind, site, created_at, ?,"
                    " message, channel, incident, alert, 1 FROM dead_letters WHERE id = ?",
                    (now, dead_id),
                )
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,))
        return found

    def dead_letter_drop(self, ids: Collection[int]) -> list[int]:
        """Delete dead letters; returns the ids that existed."""
        dropped = []
        with self._transaction("write") as conn:
            for dead_id in sorted(set(ids)):
                if conn.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,)).rowcount:
                    dropped.append(dead_id)
        return dropped

    def dead_letters(self) -> list[DeadLetter]:
        """The emails given up on, oldest first (at most DEAD_LETTER_LIMIT)."""
        with self._errors("read"):
            rows = self._conn.execute(
                "SELECT id, kind, site, created_at, failed_at, attempts, error, message,"
                " channel, incident, alert FROM dead_letters ORDER BY id"
            ).fetchall()
        return [
            DeadLetter(
                id=int(r[0]),
                kind=str(r[1]),
                site=str(r[2]),
                created_at=float(r[3]),
                failed_at=float(r[4]),
                attempts=int(r[5]),
                error=str(r[6]),
                message=bytes(r[7]),
                channel=str(r[8]),
                incident=None if r[9] is None else str(r[9]),
                alert=None if r[10] is None else str(r[10]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ silences

    def add_silence(self, site: str | None, until: float, reason: str, *, now: float) -> Silence:
        """Add a silence (expired ones are pruned first); StoreError past MAX_SILENCES."""
        with self._transaction("write") as conn:
            conn.execute("DELETE FROM silences WHERE until <= ?", (now,))
            (count,) = conn.execute("SELECT count(*) FROM silences").fetchone()
            if count >= MAX_SILENCES:
                raise StoreError(f"too many active silences ({count}); remove some first")
            cursor = conn.execute(
                "INSERT INTO silences (site, until, reason, created) VALUES (?, ?, ?, ?)",
                (site, until, reason, now),
            )
            silence_id = cursor.lastrowid
        assert silence_id is not None
        return Silence(id=silence_id, site=site, until=until, reason=reason, created=now)

    def active_silences(self, now: float) -> list[Silence]:
        with self._errors("read"):
            rows = self._conn.execute(
                "SELECT id, site, until, reason, created FROM silences WHERE until > ?"
                " ORDER BY id LIMIT ?",
                (now, MAX_SILENCES),
            ).fetchall()
        return [
            Silence(id=int(i), site=site, until=float(u), reason=str(r), created=float(c))
            for i, site, u, r, c in rows
        ]

    def remove_silence(self, silence_id: int) -> bool:
        with self._transaction("write") as conn:
            cursor = conn.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return cursor.rowcount > 0

    def changed_elsewhere(self) -> bool:
        """True when another connection (e.g. the CLI) committed since the last call: SQLite's
        data_version, which this connection's own writes do not change. Costs no I/O."""
        with self._errors("read"):
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        changed = self._data_version is not None and version != self._data_version
        self._data_version = int(version)
        return changed

    # ------------------------------------------------------------------ other modules' tables

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction for a module that owns tables here (sentinel.history)."""
        with self._transaction("write") as conn:
            yield conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One read for a module that owns tables here; sqlite errors -> StoreError."""
        with self._errors("read"):
            return [tuple(row) for row in self._conn.execute(sql, params).fetchall()]

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A small value another module stored under `key`, or None."""
        with self._errors("read"):
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value under `key` (the store's own keys are refused)."""
        if key in _RESERVED_META:
            raise ValueError(f"meta key {key!r} belongs to the store")
        with self._transaction("write") as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
