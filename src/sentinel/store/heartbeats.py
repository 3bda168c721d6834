"""Heartbeat states (sentinel.heartbeats.state.HeartbeatState as JSON): `heartbeat_state`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection

from sentinel.store.connection import Database


class Heartbeats:
    """The saved state of each heartbeat, over the shared connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def put(conn: sqlite3.Connection, name: str, data: str) -> None:
        """Write a heartbeat's state (JSON text) inside the caller's transaction."""
        conn.execute(
            "INSERT INTO heartbeat_state (name, data, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET data = excluded.data,"
            " updated_at = excluded.updated_at",
            (name, data, time.time()),
        )

    def load(self) -> dict[str, str]:
        """Every saved heartbeat state: name -> JSON text."""
        with self._db.errors("read") as conn:
            rows = conn.execute("SELECT name, data FROM heartbeat_state").fetchall()
        return {str(name): str(data) for name, data in rows}

    def forget(self, keep: Collection[str]) -> int:
        """Drop the states of heartbeats not in `keep` (they left the config)."""
        with self._db.transaction() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM heartbeat_state")]
            gone = [(n,) for n in names if n not in keep]
            conn.executemany("DELETE FROM heartbeat_state WHERE name = ?", gone)
        return len(gone)
