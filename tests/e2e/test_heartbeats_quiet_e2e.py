"""Heartbeats follow silences and maintenance windows, as sites do, through the real daemon, the
real CLI and a real SMTP server: a heartbeat silenced from the CLI goes LATE without an email and
is alerted when the silence is removed while it is still late; one late inside a maintenance
window is alerted when the window ends.

Every wait is for a condition, bounded generously; the windows leave tens of seconds of margin
so a loaded machine cannot overrun them. Each heartbeat goes late `grace` after a start ping
sent once the mute is known to be in force, so the order of events never depends on timing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from daemon_proc import SentinelProcess, wait_until
from smtp_server import ReceivedMail, SmtpServer

pytestmark = pytest.mark.slow
GRACE = 15  # seconds a started run has to end: both heartbeats go late this long after /start


def email_section(smtp_port: int) -> str:
    return f"""
[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine
"""


def heartbeats_section(*names: str) -> str:
    return "".join(
        f'\n[[heartbeats]]\nname = "{name}"\nevery = "1h"\ngrace = "{GRACE}s"\n' for name in names
    )


def sentinel(proc: SentinelProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args, "-c", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=proc.env,
    )


def start_ping(proc: SentinelProcess, name: str) -> None:
    url = f"http://127.0.0.1:{proc.port}/ping/{name}/start"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


def beats(proc: SentinelProcess) -> dict[str, dict[str, object]]:
    data = json.loads(proc.get("/api/status"))
    return {b["heartbeat"]: b for b in data["heartbeats"]}


def mails(smtp: SmtpServer, prefix: str) -> Callable[[], list[ReceivedMail]]:
    return lambda: [m for m in smtp.received() if str(m.message["Subject"]).startswith(prefix)]


def test_a_silenced_heartbeat_is_late_without_an_email_until_unsilenced(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with SmtpServer() as smtp:
        proc = sentinel_proc(email_section(smtp.port) + heartbeats_section("job", "other")).start()
        run = sentinel(proc, "silence", "job", "--for", "1h", "--reason", "migrating")
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("silenced job until ")
        wait_until(lambda: proc.metric("sentinel_silences_active") == 1, timeout=30)
        assert beats(proc)["job"]["silenced"] != [] and beats(proc)["other"]["silenced"] == []

        # Both runs start now and never end: both are late GRACE seconds from now.
        start_ping(proc, "job")
        start_ping(proc, "other")
        (other,) = wait_until(mails(smtp, "[sentinel] LATE: other"), timeout=GRACE + 60)
        wait_until(lambda: beats(proc)["job"]["status"] == "late", timeout=30)
        job = beats(proc)["job"]
        assert job["alert_held"] is True
        # The unsilenced one's LATE went out; the silenced one's was held, not sent.
        assert mails(smtp, "[sentinel] LATE: job")() == []
        status = sentinel(proc, "status")
        assert status.returncode == 0, status.stderr
        (row,) = [line for line in status.stdout.splitlines() if line.startswith("job ")]
        assert "LATE" in row and "alert held" in row and "(start)" in row
        # The page (which may be cached a few seconds) and the log say so too.
        wait_until(lambda: "LATE (alert held: silenced)" in proc.get("/").decode(), timeout=30)
        wait_until(lambda: "LATE held heartbeat=job" in proc.log(), timeout=30)

        listed = sentinel(proc, "silence", "--list")
        (line,) = listed.stdout.strip().splitlines()[1:]
        assert "job" in line and "migrating" in line
        run = sentinel(proc, "unsilence", line.split()[0])
        assert run.returncode == 0, run.stderr
        # Still late when the silence ends: alerted then, once.
        (late,) = wait_until(mails(smtp, "[sentinel] LATE: job"), timeout=30)
        assert "no end ping" in str(late.message["Subject"])
        assert beats(proc)["job"]["alert_held"] is False

        # It ends: RECOVERED threaded to the LATE that was sent.
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/ping/job", timeout=10):
            pass
        (recovered,) = wait_until(mails(smtp, "[sentinel] RECOVERED: job"), timeout=30)
        assert recovered.message["In-Reply-To"] == late.message["Message-ID"]
        assert len(mails(smtp, "[sentinel] LATE: job")()) == 1
        assert len(mails(smtp, "[sentinel] LATE: other")()) == 1
        assert other.message["In-Reply-To"] is None  # (its own incident, not job's)


def test_a_heartbeat_late_in_a_maintenance_window_is_alerted_when_it_ends(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    # A one-off window over "job" only (a heartbeat's name in `sites`), ending well after job
    # goes late even on a slow start: the daemon is up in seconds, late is GRACE after that.
    # Once job is late and held, a reload moves the window's end to a few seconds away (it
    # ends by itself then).
    window_end = time.time() + 75
    start_text = datetime.fromtimestamp(time.time() - 60, UTC).isoformat()

    def config(end: float) -> str:
        return (
            email_section(smtp.port)
            + heartbeats_section("job", "other")
            + f"""
[[maintenance]]
name = "backup rework"
sites = ["job"]
start = "{start_text}"
end = "{datetime.fromtimestamp(end, UTC).isoformat()}"
"""
        )

    with SmtpServer() as smtp:
        proc = sentinel_proc(config(window_end)).start()
        assert beats(proc)["job"]["maintenance"] == ["backup rework"]
        assert beats(proc)["other"]["maintenance"] == []
        start_ping(proc, "job")
        start_ping(proc, "other")
        pinged = time.time()
        assert pinged + GRACE + 20 < window_end, "the daemon took too long to start"
        wait_until(mails(smtp, "[sentinel] LATE: other"), timeout=GRACE + 60)
        wait_until(lambda: beats(proc)["job"]["status"] == "late", timeout=30)
        assert time.time() < window_end  # (asserted: the next check depends on it)
        assert beats(proc)["job"]["alert_held"] is True
        assert mails(smtp, "[sentinel] LATE: job")() == []

        # The window ends with job still late: its LATE goes out then (within seconds).
        window_end = time.time() + 3
        proc.write_config(config(window_end))
        proc.signal(signal.SIGHUP)
        (late,) = wait_until(mails(smtp, "[sentinel] LATE: job"), timeout=60)
        assert time.time() >= window_end
        assert "no end ping" in str(late.message["Subject"])
        assert beats(proc)["job"]["maintenance"] == []
        assert len(mails(smtp, "[sentinel] LATE: other")()) == 1
