"""The state store: what must survive a restart, in one SQLite file (`state_dir/sentinel.db`).

Owns the per-site alert states (open incidents), the durable outbox of alerts not yet delivered
(bounded by `outbox_limit`), the bounded dead letters, silences, heartbeat states, the early
warnings' histories, and a small key/value `meta` table (schema version, counters, other
modules' small facts). WAL with synchronous=NORMAL: every committed write survives a kill -9 of
the process. A state change and the alerts it causes commit in one transaction. Every call is
one small indexed statement or transaction, cheap enough for the event loop. Any SQLite failure
(full disk, I/O error, locked) surfaces as `StoreError`.

Layout: `connection` (the one connection, opening, transactions, meta), `schema` (the
append-only migrations), `codec` (dataclasses <-> JSON), one repository a table or two (`sites`,
`outbox`, `silences`, `heartbeats`, `trends`), and `facade.Store`, which callers hold.
"""

from __future__ import annotations

from sentinel.store.codec import decode_dataclass, decode_state, encode_dataclass, encode_state
from sentinel.store.connection import BUSY_TIMEOUT_MS, DB_NAME, PAGE_CACHE_KIB, WAL_SIZE_LIMIT
from sentinel.store.errors import StoreError, StoreNotFoundError
from sentinel.store.facade import Store
from sentinel.store.outbox import (
    DEAD_LETTER_LIMIT,
    DEFAULT_OUTBOX_LIMIT,
    DeadLetter,
    OutboxItem,
    Outgoing,
)
from sentinel.store.schema import MIGRATIONS, SCHEMA_VERSION
from sentinel.store.trends import LatencyHistory

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_NAME",
    "DEAD_LETTER_LIMIT",
    "DEFAULT_OUTBOX_LIMIT",
    "MIGRATIONS",
    "PAGE_CACHE_KIB",
    "SCHEMA_VERSION",
    "WAL_SIZE_LIMIT",
    "DeadLetter",
    "LatencyHistory",
    "OutboxItem",
    "Outgoing",
    "Store",
    "StoreError",
    "StoreNotFoundError",
    "decode_dataclass",
    "decode_state",
    "encode_dataclass",
    "encode_state",
]
