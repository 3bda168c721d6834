"""`Store`: the one object the rest of sentinel holds, a thin façade over the repositories that
share its connection. Each method is one repository call, or a transaction spanning two (a
state change and the alerts it causes commit together)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentinel.monitor import SiteState
from sentinel.silences import Silence
from sentinel.store.connection import Database
from sentinel.store.heartbeats import Heartbeats
from sentinel.store.outbox import DEFAULT_OUTBOX_LIMIT, DeadLetter, Outbox, OutboxItem, Outgoing
from sentinel.store.silences import Silences
from sentinel.store.sites import SiteStates
from sentinel.store.trends import LatencyHistories, LatencyHistory, TrendHistory


class Store:
    """One SQLite connection to `state_dir/sentinel.db`; get one with `open` or `open_readonly`.
    The repositories (`states`, `outbox`, `silences`, `heartbeats`, `latency`, `trends`) are
    public for callers that want them; the methods below keep the older, flat interface."""

    def __init__(self, db: Database, *, outbox_limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        self.db = db
        self.outbox = Outbox(db, outbox_limit)
        self.states = SiteStates(db)
        self.silences = Silences(db)
        self.heartbeats = Heartbeats(db)
        self.latency = LatencyHistories(db)
        self.trends = TrendHistory(db)
        self._seen_version: int | None = None

    @classmethod
    def open(cls, state_dir: str | Path, *, outbox_limit: int = DEFAULT_OUTBOX_LIMIT) -> Store:
        """Open (creating if needed) the read-write store. A corrupted file is moved aside."""
        if outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        return cls(Database.open(state_dir), outbox_limit=outbox_limit)

    @classmethod
    def open_readonly(cls, state_dir: str | Path) -> Store:
        """Open for reading only (`sentinel status`); works while the daemon holds it open."""
        return cls(Database.open_readonly(state_dir))

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def readonly(self) -> bool:
        return self.db.readonly

    @property
    def outbox_limit(self) -> int:
        return self.outbox.limit

    def close(self) -> None:
        """Close the connection (a clean close also checkpoints the WAL)."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ site states

    def load_states(self) -> dict[str, SiteState]:
        """Every saved site state; a row that cannot be decoded is skipped with a warning."""
        return self.states.load()

    def save_state(self, state: SiteState | None, outgoing: Sequence[Outgoing] = ()) -> None:
        """Write `state` and enqueue `outgoing` in one transaction: both happen or neither.
        `state` None only enqueues (emails not tied to a site's incident, e.g. early warnings)."""
        with self.db.transaction() as conn:
            if state is not None:
                self.states.put(conn, state)
            dropped = self.outbox.enqueue(conn, outgoing)
        self.outbox.log_dropped(dropped)

    def delete_site(self, name: str) -> None:
        """Forget a site's state and drift history (it left the config). Its pending emails
        still go out."""
        with self.db.transaction() as conn:
            self.states.delete(conn, name)
            self.latency.delete(conn, name)

    # ------------------------------------------------------------------ early warnings

    def save_latency_history(self, rows: Sequence[LatencyHistory]) -> None:
        self.latency.save(rows)

    def load_latency_history(self) -> dict[str, LatencyHistory]:
        return self.latency.load()

    def forget_latency_history(self, keep: Collection[str]) -> int:
        return self.latency.forget(keep)

    def replace_trend_history(self, rows: Mapping[str, str], saved_at: float) -> None:
        self.trends.replace(rows, saved_at)

    def load_trend_history(self) -> dict[str, str]:
        return self.trends.load()

    # ------------------------------------------------------------------ heartbeats

    def save_heartbeat(self, name: str, data: str, outgoing: Sequence[Outgoing] = ()) -> None:
        """Write a heartbeat's state (JSON text) and enqueue its alerts in one transaction."""
        with self.db.transaction() as conn:
            self.heartbeats.put(conn, name, data)
            dropped = self.outbox.enqueue(conn, outgoing)
        self.outbox.log_dropped(dropped)

    def load_heartbeats(self) -> dict[str, str]:
        return self.heartbeats.load()

    def forget_heartbeats(self, keep: Collection[str]) -> int:
        return self.heartbeats.forget(keep)

    # ------------------------------------------------------------------ outbox

    def outbox_next(self, now: float, *, exclude: Collection[int] = ()) -> OutboxItem | None:
        return self.outbox.next(now, exclude=exclude)

    def outbox_heads(
        self, channel: str, now: float, *, exclude: Collection[int] = (), limit: int = 1000
    ) -> list[OutboxItem]:
        return self.outbox.heads(channel, now, exclude=exclude, limit=limit)

    def outbox_later_kinds(self, item: OutboxItem) -> list[str]:
        return self.outbox.later_kinds(item)

    def outbox_unescalated(
        self, channel: str, site: str, created_before: float
    ) -> list[OutboxItem]:
        return self.outbox.unescalated(channel, site, created_before)

    def outbox_escalate(self, item_id: int, copies: Sequence[Outgoing]) -> None:
        self.outbox.escalate(item_id, copies)

    def outbox_items(self, limit: int = 1000) -> list[OutboxItem]:
        return self.outbox.items(limit)

    def outbox_done(self, item_id: int) -> None:
        self.outbox.done(item_id)

    def outbox_retry_later(
        self, item_id: int, next_attempt_at: float, error: str, *, permanent: bool = False
    ) -> None:
        self.outbox.retry_later(item_id, next_attempt_at, error, permanent=permanent)

    def outbox_give_up(self, item_id: int, error: str, *, now: float | None = None) -> None:
        self.outbox.give_up(item_id, error, now=now)

    def outbox_pending(self) -> int:
        return self.outbox.pending()

    def outbox_dropped_total(self) -> int:
        return self.outbox.dropped_total()

    def dead_letter_count(self) -> int:
        return self.outbox.dead_letter_count()

    def dead_letter_retry(self, ids: Collection[int] | None, *, now: float) -> list[int]:
        return self.outbox.dead_letter_retry(ids, now=now)

    def dead_letter_drop(self, ids: Collection[int]) -> list[int]:
        return self.outbox.dead_letter_drop(ids)

    def dead_letters(self) -> list[DeadLetter]:
        return self.outbox.dead_letters()

    def outbox_held(self, channel: str, limit: int = 1000) -> list[OutboxItem]:
        return self.outbox.held(channel, limit)

    def outbox_release(
        self,
        ids: Collection[int],
        *,
        merged: tuple[bytes, str | None, str] | None = None,
        roots: Mapping[str, str] | None = None,
        now: float,
    ) -> None:
        self.outbox.release(ids, merged=merged, roots=roots, now=now)

    def outbox_thread_roots(self, channel: str, incidents: Collection[str]) -> dict[str, str]:
        return self.outbox.thread_roots(channel, incidents)

    # ------------------------------------------------------------------ silences

    def add_silence(self, site: str | None, until: float, reason: str, *, now: float) -> Silence:
        return self.silences.add(site, until, reason, now=now)

    def active_silences(self, now: float) -> list[Silence]:
        return self.silences.active(now)

    def remove_silence(self, silence_id: int) -> bool:
        return self.silences.remove(silence_id)

    # ------------------------------------------------------------------ writes by others

    def data_version(self) -> int:
        """Changes when another connection (e.g. `sentinel outbox retry`) committed a write."""
        return self.db.data_version()

    def changed_elsewhere(self) -> bool:
        """True when another connection (e.g. the CLI) committed since the last call (False at
        the first): `data_version` with this caller's baseline. One caller only (the daemon's
        silence watch); another keeps its own baseline of `data_version`, as the outbox does."""
        version = self.db.data_version()
        changed = self._seen_version is not None and version != self._seen_version
        self._seen_version = version
        return changed

    # ------------------------------------------------------------------ other modules' tables

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction for a module that owns tables here (sentinel.history)."""
        with self.db.transaction() as conn:
            yield conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One read for a module that owns tables here; sqlite errors -> StoreError."""
        return self.db.query(sql, params)

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A small value another module stored under `key`, or None."""
        return self.db.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value under `key` (the store's own keys are refused)."""
        self.db.set_meta(key, value)
