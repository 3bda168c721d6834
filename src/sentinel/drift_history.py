"""Keeps each site's latency-drift history in the store across restarts.

Without it every restart of sentinel (an upgrade, a reboot) would blind drift detection for a day
(the baseline needs `min_baseline_buckets` hours) and forget a SLOWER warning already sent, so its
RESOLVED would never come. Saved hourly (as the baseline gains a median) and at a clean stop; a
crash loses at most the last hour. 1.7 KiB a site at a 60 s interval, 2.5 KiB at 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from sentinel.early.service import EarlyWarnings
from sentinel.early.warnings import WarningState
from sentinel.logsetup import kv
from sentinel.store import LatencyHistory, Store, StoreError, decode_dataclass, encode_dataclass

log = logging.getLogger("sentinel.drift")

SAVE_EVERY = 3600.0  # seconds: the baseline gains one median an hour
SITES_PER_WRITE = 50  # one transaction of ~125 KiB: small transient buffers, the loop runs between


def restore(store: Store, early: EarlyWarnings, drift_sites: Collection[str]) -> int:
    """Give back the saved histories of `drift_sites`; drop the others (sites removed, or with
    latency_drift turned off, while sentinel was stopped), resolving a SLOWER warning they had.
    Returns how many were restored."""
    keep = set(drift_sites)
    try:
        saved = store.load_latency_history()
    except StoreError as exc:
        log.error("cannot read saved latency history, starting fresh: %s", exc)
        return 0
    restored = 0
    for name, row in saved.items():
        warning: WarningState | None = None
        if row.warning is not None:
            try:
                warning = decode_dataclass(WarningState, row.warning)
            except ValueError as exc:
                log.warning("ignoring unreadable saved warning %s", kv(site=name, why=exc))
        if name in keep:
            restored += early.restore_site(name, row.history, warning)
        elif warning is not None:
            early.end_warning(warning, "removed")
    try:
        store.forget_latency_history(keep=keep)
    except StoreError as exc:
        log.error("cannot drop the latency history of removed sites: %s", exc)
    if saved:
        log.info("latency history restored %s", kv(sites=restored, saved=len(saved)))
    return restored


async def save(
    store: Store,
    early: EarlyWarnings,
    still_configured: Callable[[str], bool],
    on_error: Callable[[StoreError], None],
) -> int:
    """Write every tracked site's history, SITES_PER_WRITE to a transaction. Returns how many."""
    now = time.time()
    chunk: list[LatencyHistory] = []
    written = 0

    def flush() -> None:
        nonlocal written
        # (a reload during a pause may have removed a site: never write its history back)
        rows = [r for r in chunk if still_configured(r.site)]
        try:
            store.save_latency_history(rows)
            written += len(rows)
        except StoreError as exc:
            on_error(exc)
        chunk.clear()

    for name, history, warning in early.drift_histories():
        text = None if warning is None else encode_dataclass(warning)
        chunk.append(LatencyHistory(name, history, text, now))
        if len(chunk) >= SITES_PER_WRITE:
            flush()
            await asyncio.sleep(0)
    if chunk:
        flush()
    return written


async def save_periodically(
    store: Store,
    early: EarlyWarnings,
    still_configured: Callable[[str], bool],
    on_error: Callable[[StoreError], None],
    every: float = SAVE_EVERY,
) -> None:
    """Until cancelled."""
    while True:
        await asyncio.sleep(every)
        written = await save(store, early, still_configured, on_error)
        log.debug("latency history saved %s", kv(sites=written))
