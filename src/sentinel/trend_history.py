"""Keeps the memory, disk and CPU-steal trends in the store across restarts of sentinel.

Without it a restart (an upgrade, a reboot) would forget every series and warning: a trend still
going on would be warned about again once re-confirmed, and a warning already emailed would never
get its RESOLVED. Written whenever a trend's state changes (a bucket evaluated, a warning started
or ended; at most every MIN_GAP) and at a clean stop: a few KiB a watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sentinel.early.service import EarlyWarnings, TrendRecord
from sentinel.logsetup import kv
from sentinel.store import Store, StoreError, decode_dataclass, encode_dataclass

log = logging.getLogger("sentinel.trends")

MIN_GAP = 10.0  # seconds between two writes: short test windows evaluate many times a second


def restore(store: Store, early: EarlyWarnings) -> int:
    """Give the saved trends back to `early` (resolving the warnings of those no longer watched)
    before it starts sampling. Returns how many were restored."""
    try:
        saved = store.load_trend_history()
    except StoreError as exc:
        log.error("cannot read saved trends, starting fresh: %s", exc)
        return 0
    records: dict[str, TrendRecord] = {}
    for key, text in saved.items():
        try:
            records[key] = decode_dataclass(TrendRecord, text)
        except ValueError as exc:
            log.warning("ignoring an unreadable saved trend %s", kv(key=key, why=exc))
    restored = early.restore_trends(records)
    if saved:
        log.info("trends restored %s", kv(trends=restored, saved=len(saved)))
    early.trends_changed.set()  # write back at once: the dropped ones must not come back
    return restored


def save(store: Store, early: EarlyWarnings, on_error: Callable[[StoreError], None]) -> int:
    """Write every current trend (and drop the others). Returns how many were written."""
    rows = {key: encode_dataclass(record) for key, record in early.trend_records().items()}
    try:
        store.replace_trend_history(rows, time.time())
    except StoreError as exc:
        on_error(exc)
        return 0
    return len(rows)


async def save_when_changed(
    store: Store,
    early: EarlyWarnings,
    on_error: Callable[[StoreError], None],
    min_gap: float = MIN_GAP,
) -> None:
    """Until cancelled: save after each change, at most once per `min_gap`."""
    while True:
        await early.trends_changed.wait()
        early.trends_changed.clear()
        written = save(store, early, on_error)
        log.debug("trends saved %s", kv(trends=written))
        await asyncio.sleep(min_gap)
