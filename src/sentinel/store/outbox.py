"""The outbox and the dead letters: every SQL statement on the `outbox` and `dead_letters` tables
is here (their schema is in schema.py, appended to like every table's).

The outbox is durable and bounded: past `limit` items the oldest are dropped (and counted in
`meta`). Delivery is in order per site and channel. An item given up on becomes a dead letter;
only the latest DEAD_LETTER_LIMIT are kept, and `sentinel outbox retry` moves them back.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.store.connection import Database
from sentinel.store.schema import META_DROPPED

log = logging.getLogger("sentinel.store")

DEFAULT_OUTBOX_LIMIT = 1000
DEAD_LETTER_LIMIT = 100
THREAD_KEEP = 90 * 86400.0  # how long a grouped DOWN's Message-ID is kept for its later emails


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


ITEM_COLUMNS = (
    "id, kind, site, created_at, next_attempt_at, attempts, permanent_failures, last_error,"
    " message, channel, incident, alert, escalated, hold"
)


def outbox_item(row: Sequence[Any], now: float) -> OutboxItem:
    """A row of ITEM_COLUMNS -> OutboxItem."""
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


class Outbox:
    """The outbox and dead letters over the shared connection."""

    def __init__(self, db: Database, limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        if limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        self._db = db
        self.limit = limit

    # ------------------------------------------------------------------ enqueueing

    def enqueue(self, conn: sqlite3.Connection, outgoing: Sequence[Outgoing]) -> int:
        """Add `outgoing` inside the caller's transaction (a state change and its alerts commit
        together), then drop the oldest past the limit; returns how many were dropped."""
        if not outgoing:
            return 0
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
        return self._enforce_limit(conn)

    def _enforce_limit(self, conn: sqlite3.Connection) -> int:
        (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        excess = int(count) - self.limit
        if excess <= 0:
            return 0
        conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(CAST(meta.value AS INTEGER) + ? AS TEXT)",
            (META_DROPPED, str(excess), excess),
        )
        return excess

    def log_dropped(self, dropped: int) -> None:
        """Say so when `enqueue` dropped items (after the transaction committed)."""
        if dropped:
            log.warning(
                "outbox full (%d emails): dropped the %d oldest undelivered email(s)",
                self.limit,
                dropped,
            )

    def add(self, outgoing: Sequence[Outgoing]) -> None:
        """Enqueue `outgoing` in a transaction of its own."""
        with self._db.transaction() as conn:
            dropped = self.enqueue(conn, outgoing)
        self.log_dropped(dropped)

    # ------------------------------------------------------------------ reading

    def next(self, now: float, *, exclude: Collection[int] = ()) -> OutboxItem | None:
        """The oldest pending email (delivery is in order), due or not; None if none is pending.
        Ids in `exclude` (delivered, but their deletion failed) are skipped."""
        skip = sorted(exclude)
        where = f" WHERE id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._db.errors("read") as conn:
            row = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox{where} ORDER BY id LIMIT 1", skip
            ).fetchone()
        return None if row is None else outbox_item(row, now)

    def heads(
        self, channel: str, now: float, *, exclude: Collection[int] = (), limit: int = 1000
    ) -> list[OutboxItem]:
        """The oldest pending item of each site on `channel`, oldest first: delivery keeps the
        order per site and channel, and one site's failing item does not hold back another's."""
        skip = sorted(exclude)
        also = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox WHERE id IN (SELECT min(id) FROM outbox"
                f" WHERE channel = ?{also} GROUP BY site) ORDER BY id LIMIT ?",
                (channel, *skip, limit),
            ).fetchall()
        return [outbox_item(row, now) for row in rows]

    def later_kinds(self, item: OutboxItem) -> list[str]:
        """The kinds of the items after `item` for the same channel, site and incident."""
        if item.incident is None:
            return []
        with self._db.errors("read") as conn:
            rows = conn.execute(
                "SELECT kind FROM outbox WHERE channel = ? AND site = ? AND incident = ?"
                " AND id > ? ORDER BY id LIMIT 100",
                (item.channel, item.site, item.incident, item.id),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def unescalated(self, channel: str, site: str, created_before: float) -> list[OutboxItem]:
        """Items of `channel` and `site` created before `created_before` and not yet handed to
        a fallback channel (at most 100, oldest first)."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox WHERE channel = ? AND site = ?"
                " AND escalated = 0 AND created_at < ? ORDER BY id LIMIT 100",
                (channel, site, created_before),
            ).fetchall()
        return [outbox_item(row, created_before) for row in rows]

    def items(self, limit: int = 1000) -> list[OutboxItem]:
        """Every pending item, oldest first (for `sentinel outbox list`)."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [outbox_item(row, time.time()) for row in rows]

    def pending(self) -> int:
        """How many emails wait to be (re)sent."""
        with self._db.errors("read") as conn:
            (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

    def dropped_total(self) -> int:
        """Emails dropped because the outbox was full, over the store's whole life."""
        value = self._db.get_meta(META_DROPPED)
        return int(value) if value is not None else 0

    # ------------------------------------------------------------------ outage grouping

    def held(self, channel: str, limit: int = 1000) -> list[OutboxItem]:
        """The items of `channel` still waiting to be grouped, oldest first."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox WHERE channel = ? AND hold IS NOT NULL"
                " ORDER BY id LIMIT ?",
                (channel, limit),
            ).fetchall()
        return [outbox_item(row, time.time()) for row in rows]

    def release(
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
        with self._db.transaction() as conn:
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

    def thread_roots(self, channel: str, incidents: Collection[str]) -> dict[str, str]:
        """incident -> the Message-ID of the (grouped) email its DOWN went out in."""
        wanted = sorted(set(incidents))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        with self._db.errors("read") as conn:
            rows = conn.execute(
                f"SELECT incident, root FROM outbox_threads WHERE channel = ?"
                f" AND incident IN ({marks})",
                (channel, *wanted),
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # ------------------------------------------------------------------ delivery

    def escalate(self, item_id: int, copies: Sequence[Outgoing]) -> None:
        """Mark the item as handed to its fallback and enqueue the fallback's copy, at once."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE outbox SET escalated = 1 WHERE id = ?", (item_id,))
            dropped = self.enqueue(conn, copies)
        self.log_dropped(dropped)

    def done(self, item_id: int) -> None:
        """The email was delivered: remove it."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def retry_later(
        self, item_id: int, next_attempt_at: float, error: str, *, permanent: bool = False
    ) -> None:
        """Record a failed attempt and when to try again."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1,"
                " permanent_failures = permanent_failures + ?, last_error = ? WHERE id = ?",
                (next_attempt_at, 1 if permanent else 0, error, item_id),
            )

    def give_up(self, item_id: int, error: str, *, now: float | None = None) -> None:
        """Move the email to the dead letters (only the latest DEAD_LETTER_LIMIT are kept)."""
        with self._db.transaction() as conn:
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

    # ------------------------------------------------------------------ dead letters

    def dead_letter_count(self) -> int:
        """How many dead letters are kept (the `sentinel_dead_letters` gauge)."""
        with self._db.errors("read") as conn:
            (count,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        return int(count)

    def dead_letter_retry(self, ids: Collection[int] | None, *, now: float) -> list[int]:
        """Move dead letters (`ids`, or all when None) back into the outbox, due now and with
        fresh attempts; returns the ids moved. One transaction: safe beside a running daemon."""
        with self._db.transaction() as conn:
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
        with self._db.transaction() as conn:
            for dead_id in sorted(set(ids)):
                if conn.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,)).rowcount:
                    dropped.append(dead_id)
        return dropped

    def dead_letters(self) -> list[DeadLetter]:
        """The emails given up on, oldest first (at most DEAD_LETTER_LIMIT)."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
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
