"""Noise control through the real daemon and a real SMTP server: a failure confirmed at
retry_interval, and a maintenance window that holds the DOWN email until it ends."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable

import pytest

from daemon_proc import SentinelProcess, wait_until
from smtp_server import SmtpServer
from targets import target_server

EMAIL = """
[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine
"""


def down_subjects(smtp: SmtpServer) -> list[str]:
    return [
        str(m.message["Subject"])
        for m in smtp.messages_received
        if "DOWN" in str(m.message["Subject"])
    ]


@pytest.mark.slow
def test_a_failure_is_confirmed_at_retry_interval_not_whole_intervals(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 500}) as target, SmtpServer() as smtp:
        proc = sentinel_proc(
            f"""
[defaults]
interval = "30s"
timeout = "2s"
retry_interval = "1s"
failure_threshold = 3
{EMAIL.format(smtp_port=smtp.port)}
[[sites]]
name = "shop"
url = "{target.url("/shop")}"
"""
        ).start()
        # The first probe comes at a random moment of the first 30 s; then it is PENDING.
        wait_until(
            lambda: proc.metric("sentinel_site_state", site="shop", state="pending") == 1,
            timeout=60,
        )
        first_failure = time.monotonic()
        wait_until(lambda: down_subjects(smtp), timeout=60)
        # Two more probes 1 s apart (~2 s), not 2 x 30 s: the bound sits halfway, so that a loaded
        # machine's delays cannot reach it while whole intervals would be far past it.
        assert time.monotonic() - first_failure < 30
        (subject,) = down_subjects(smtp)
        assert subject.startswith("[sentinel] DOWN: shop — HTTP 500")
        assert proc.metric("sentinel_site_state", site="shop", state="down") == 1
        assert proc.metric("sentinel_site_state", site="shop", state="pending") == 0
        assert proc.status()["shop"]["state"] == "down"


# The maintenance window's length, from before the daemon starts.
WINDOW = 60


@pytest.mark.slow
def test_a_site_down_in_a_maintenance_window_is_alerted_when_it_ends(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    now = dt.datetime.now(dt.UTC)
    # The window must outlast the daemon's start, two failed probes and a scrape, which a loaded
    # machine can stretch to many seconds; the in-window checks below must all happen before it.
    # Once they have, a reload moves its end to a few seconds away (it ends by itself then).
    end = now + dt.timedelta(seconds=WINDOW)

    def config(end: dt.datetime) -> str:
        return f"""
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2
{EMAIL.format(smtp_port=smtp.port)}
[[sites]]
name = "shop"
url = "{target.url("/shop")}"

[[maintenance]]
name = "deploy"
start = "{(now - dt.timedelta(minutes=1)).isoformat()}"
end = "{end.isoformat()}"
"""

    with target_server({"/shop": 500}) as target, SmtpServer() as smtp:
        proc = sentinel_proc(config(end)).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 0, timeout=WINDOW)
        assert proc.metric("sentinel_maintenance_active", maintenance="deploy") == 1
        assert proc.status()["shop"]["maintenance"] == ["deploy"]
        assert down_subjects(smtp) == []  # DOWN, but held during the window
        end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        proc.write_config(config(end))
        proc.signal(signal.SIGHUP)
        wait_until(lambda: down_subjects(smtp), timeout=WINDOW + 30)
        assert dt.datetime.now(dt.UTC) >= end
        (subject,) = down_subjects(smtp)
        assert subject.startswith("[sentinel] DOWN: shop — HTTP 500")
        assert proc.metric("sentinel_maintenance_active", maintenance="deploy") == 0


@pytest.mark.slow
def test_a_flapping_site_gets_one_flapping_and_one_stable_email_and_every_probe_is_counted(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    # (FLAPPING and STABLE once made the daemon's bookkeeping of the probe raise: no email, the
    # probe missing from the metrics and history, an internal error logged. Found by the soak.)
    with target_server({"/shop": 200}) as target, SmtpServer() as smtp:
        proc = sentinel_proc(
            f"""
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 1
flap_changes = 2
flap_window = "10m"
flap_quiet = "15s"  # longer than any wait between the two changes, even on a loaded machine
{EMAIL.format(smtp_port=smtp.port)}
[[sites]]
name = "shop"
url = "{target.url("/shop")}"
"""
        ).start()

        def up_is(value: int) -> Callable[[], bool]:
            return lambda: proc.metric("sentinel_site_up", site="shop") == value

        wait_until(up_is(1), timeout=30)
        for status, up in ((500, 0), (200, 1)):  # two changes: FLAPPING, then quiet: STABLE
            target.routes["/shop"] = status
            wait_until(up_is(up), timeout=30)

        def subjects(word: str) -> list[str]:
            return [
                str(m.message["Subject"])
                for m in smtp.messages_received
                if f"] {word}:" in str(m.message["Subject"])
            ]

        wait_until(lambda: subjects("FLAPPING"), timeout=30)
        wait_until(lambda: subjects("STABLE"), timeout=60)  # 15 s of quiet, UP
        assert subjects("FLAPPING") == ["[sentinel] FLAPPING: shop"]
        assert subjects("STABLE") == ["[sentinel] STABLE: shop (now UP)"]
        assert (proc.metric("sentinel_internal_errors_total") or 0) == 0
        assert "internal error" not in proc.log()
