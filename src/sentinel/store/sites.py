"""Per-site alert states (open incidents): the `site_state` table, a row of JSON per site."""

from __future__ import annotations

import logging
import sqlite3
import time

from sentinel.monitor import SiteState
from sentinel.store.codec import decode_state, encode_state
from sentinel.store.connection import Database

log = logging.getLogger("sentinel.store")


class SiteStates:
    """The saved `SiteState` of every site, over the shared connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> dict[str, SiteState]:
        """Every saved site state; a row that cannot be decoded is skipped with a warning."""
        with self._db.errors("read") as conn:
            rows = conn.execute("SELECT site, data FROM site_state ORDER BY site").fetchall()
        states: dict[str, SiteState] = {}
        for site, data in rows:
            try:
                states[site] = decode_state(str(site), str(data))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable saved state of site %r: %s", site, exc)
        return states

    @staticmethod
    def put(conn: sqlite3.Connection, state: SiteState) -> None:
        """Write `state` inside the caller's transaction."""
        conn.execute(
            "INSERT INTO site_state (site, data, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(site) DO UPDATE SET data = excluded.data,"
            " updated_at = excluded.updated_at",
            (state.site, encode_state(state), time.time()),
        )

    @staticmethod
    def delete(conn: sqlite3.Connection, name: str) -> None:
        """Forget a site's state inside the caller's transaction."""
        conn.execute("DELETE FROM site_state WHERE site = ?", (name,))
