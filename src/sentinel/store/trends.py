"""What early warnings keep across restarts: each site's latency-drift history
(`latency_history`) and the memory, disk and CPU-steal trends (`trend_history`).

sentinel.drift_history and sentinel.trend_history decide what to save and when; the SQL is here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sentinel.store.connection import Database


@dataclass(frozen=True, slots=True)
class LatencyHistory:
    """One site's saved latency-drift state: `history` from LatencyTracker.dump, `warning` its
    WarningState as JSON (None: no warning state worth keeping)."""

    site: str
    history: bytes
    warning: str | None
    saved_at: float


class LatencyHistories:
    """The `latency_history` table, over the shared connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, rows: Sequence[LatencyHistory]) -> None:
        """Upsert some sites' latency histories in one transaction (the caller chunks them, so
        no single write holds the event loop for long)."""
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO latency_history (site, history, warning, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(site) DO UPDATE SET history = excluded.history,"
                " warning = excluded.warning, saved_at = excluded.saved_at",
                [(r.site, r.history, r.warning, r.saved_at) for r in rows],
            )

    def load(self) -> dict[str, LatencyHistory]:
        """Every saved history, by site."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                "SELECT site, history, warning, saved_at FROM latency_history"
            ).fetchall()
        return {
            site: LatencyHistory(site, bytes(history), warning, float(saved_at))
            for site, history, warning, saved_at in rows
        }

    def forget(self, keep: Collection[str]) -> int:
        """Drop the histories of sites not in `keep` (removed while sentinel was stopped, or
        with latency_drift turned off); returns how many were dropped."""
        with self._db.transaction() as conn:
            names = [r[0] for r in conn.execute("SELECT site FROM latency_history")]
            gone = [(n,) for n in names if n not in keep]
            conn.executemany("DELETE FROM latency_history WHERE site = ?", gone)
        return len(gone)

    @staticmethod
    def delete(conn: sqlite3.Connection, site: str) -> None:
        """Forget one site's history inside the caller's transaction."""
        conn.execute("DELETE FROM latency_history WHERE site = ?", (site,))


class TrendHistory:
    """The `trend_history` table (key -> JSON), over the shared connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def replace(self, rows: Mapping[str, str], saved_at: float) -> None:
        """Make the saved trends exactly `rows` (key -> JSON), in one transaction: a trend no
        longer watched is dropped with the same write."""
        with self._db.transaction() as conn:
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

    def load(self) -> dict[str, str]:
        """key -> the JSON saved by `replace`."""
        with self._db.errors("read") as conn:
            rows = conn.execute("SELECT key, data FROM trend_history").fetchall()
        return {str(key): str(data) for key, data in rows}
