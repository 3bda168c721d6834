"""A restart of the real daemon keeps each site's latency-drift history (the week of hourly
medians behind `sentinel_site_latency_baseline_seconds`) and drops that of removed sites."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from sentinel.early.latency import LatencyTracker
from sentinel.store import LatencyHistory, Store
from targets import target_server

pytestmark = pytest.mark.slow  # every test here starts the daemon

SITES = """
[defaults]
interval = "1s"
timeout = "500ms"

[[sites]]
name = "blog"
url = "{url}"
"""


def two_days_of_history(median: float) -> bytes:
    """What a sentinel that probed `blog` every minute for two days would have saved."""
    tracker = LatencyTracker()
    now = time.time() - 2 * 86400
    while now < time.time() - 60:
        tracker.observe(median, now)
        now += 60
    assert tracker.baseline_seconds() == pytest.approx(median, rel=4e-4)  # (kept to 0.036 %)
    return tracker.dump()


def saved(state_dir: Path) -> dict[str, LatencyHistory]:
    with Store.open(state_dir) as store:
        return store.load_latency_history()


def test_the_baseline_survives_a_restart_and_removed_sites_lose_theirs(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server() as target:
        proc = sentinel_proc(SITES.format(url=target.url("/ok")))
        with Store.open(proc.state_dir) as store:  # as left by the previous run
            store.save_latency_history(
                [
                    LatencyHistory("blog", two_days_of_history(0.25), None, time.time() - 60),
                    LatencyHistory("removed-meanwhile", two_days_of_history(0.5), None, 1.0),
                ]
            )
        started = time.time()
        proc.start()
        # At once, not after a day of new history:
        baseline = wait_until(
            lambda: proc.metric("sentinel_site_latency_baseline_seconds", site="blog"), timeout=10
        )
        assert baseline == pytest.approx(0.25, rel=4e-4)
        assert "latency history restored sites=1" in proc.log()
        wait_until(lambda: proc.metric("sentinel_site_up", site="blog") == 1, timeout=10)
        time.sleep(1.5)  # a probe or two into the open bucket
        assert proc.stop() == 0

    rows = saved(proc.state_dir)
    assert set(rows) == {"blog"}  # the removed site's history went at start
    assert rows["blog"].saved_at >= started  # written again at the clean stop ...
    restored = LatencyTracker.load(rows["blog"].history)
    assert restored.baseline_seconds() == pytest.approx(0.25, rel=4e-4)  # ... as it was
