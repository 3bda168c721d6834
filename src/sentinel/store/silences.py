"""Run-time silences (`sentinel silence`): the `silences` table. Expired rows are pruned."""

from __future__ import annotations

from sentinel.silences import MAX_SILENCES, Silence
from sentinel.store.connection import Database
from sentinel.store.errors import StoreError


class Silences:
    """The active silences, over the shared connection."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, site: str | None, until: float, reason: str, *, now: float) -> Silence:
        """Add a silence (expired ones are pruned first); StoreError past MAX_SILENCES."""
        with self._db.transaction() as conn:
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

    def active(self, now: float) -> list[Silence]:
        """The silences still running at `now`, oldest first (at most MAX_SILENCES)."""
        with self._db.errors("read") as conn:
            rows = conn.execute(
                "SELECT id, site, until, reason, created FROM silences WHERE until > ?"
                " ORDER BY id LIMIT ?",
                (now, MAX_SILENCES),
            ).fetchall()
        return [
            Silence(id=int(i), site=site, until=float(u), reason=str(r), created=float(c))
            for i, site, u, r, c in rows
        ]

    def remove(self, silence_id: int) -> bool:
        """Delete a silence; False if there was none with that id."""
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return cursor.rowcount > 0
