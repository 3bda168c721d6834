"""The store's migrations are append-only: a step that has shipped is never edited, because a
store already past it would never run the edit (and one not yet past it would run another
schema than the others). A new step is appended; this test needs no change for it."""

from __future__ import annotations

import hashlib

from sentinel.store import MIGRATIONS, SCHEMA_VERSION

# sha256 (first 16 hex digits) of each shipped step's statements joined by newlines.
SHIPPED = (
    "7d1a841550b87fb9",  # 1: meta, site_state, outbox, dead_letters
    "258b6f6c015cf164",  # 2: latency_history
    "fcac492d6457387a",  # 3: trend_history
    "666cde6199fabc5e",  # 4: silences
    "8cacaffd830dd016",  # 5: channels
    "85e0000b1111e3fc",  # 6: heartbeat_state
    "426b27d784b173f4",  # 7: history
    "da2dcca9ffd70dec",  # 8: outage grouping
    "72a866cc18705633",  # 9: history excused_ms
    "98061a8c77373075",  # 10: index of held outbox items
)


def fingerprint(step: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(step).encode()).hexdigest()[:16]


def test_shipped_migrations_are_never_edited_only_appended_to() -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= len(SHIPPED)
    for number, (step, shipped) in enumerate(zip(MIGRATIONS, SHIPPED, strict=False), start=1):
        assert fingerprint(step) == shipped, (
            f"migration {number} was edited: append a new step to store/schema.py instead"
        )
