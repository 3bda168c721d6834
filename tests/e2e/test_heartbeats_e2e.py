"""Heartbeats through the real daemon, real curl, the real `sentinel wrap` and a real SMTP server:
a job that fails then recovers, one that never starts, one that starts and never ends, a restart
in between, wrong tokens, and a ping flood."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, free_port, wait_until
from smtp_server import ReceivedMail, SmtpServer

pytestmark = pytest.mark.slow
TOKEN = "t0ken-for-tests"


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


def heartbeat(name: str, every: str, grace: str, token_file: Path | None = None) -> str:
    token = f'token_file = "{token_file}"\n' if token_file else ""
    return f'\n[[heartbeats]]\nname = "{name}"\nevery = "{every}"\ngrace = "{grace}"\n{token}'


def curl(url: str, *extra: str) -> int:
    """The HTTP status curl got (0 if it got none)."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *extra, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return int(out.stdout or 0)


def wrap(proc: SentinelProcess, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sentinel",
            "wrap",
            "-c",
            str(proc.config_path),
            name,
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=proc.env,
    )


def heartbeats(proc: SentinelProcess) -> dict[str, dict[str, object]]:
    data = json.loads(proc.get("/api/status"))
    return {h["heartbeat"]: h for h in data["heartbeats"]}


def mails_with(smtp: SmtpServer, prefix: str) -> Callable[[], list[ReceivedMail]]:
    return lambda: [m for m in smtp.received() if str(m.message["Subject"]).startswith(prefix)]


def body_of(mail: ReceivedMail) -> str:
    part = mail.message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _need_curl() -> None:
    assert shutil.which("curl"), "curl is needed (.ci/run installs it)"


def test_curl_and_wrap_a_failing_job_and_its_recovery(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    token_file = tmp_path / "backup.token"
    token_file.write_text(TOKEN + "\n")
    with SmtpServer() as smtp:
        proc = sentinel_proc(
            email_section(smtp.port) + heartbeat("backup", "1h", "1h", token_file)
        ).start()
        base = f"http://127.0.0.1:{proc.port}/ping/backup"
        assert heartbeats(proc)["backup"]["status"] == "new"
        # Wrong or missing tokens, and names that do not exist, all look the same.
        assert curl(base) == 401
        assert curl(base + "?token=wrong") == 401
        assert curl(f"http://127.0.0.1:{proc.port}/ping/nosuch?token={TOKEN}") == 401
        assert heartbeats(proc)["backup"]["status"] == "new"
        assert curl(base + f"?token={TOKEN}") == 200
        assert curl(base + "/start", "-H", f"Authorization: Bearer {TOKEN}") == 200
        assert heartbeats(proc)["backup"]["status"] == "running"

        failed = wrap(
            proc, "backup", "sh", "-c", "echo copying; echo 'error: disk full' >&2; exit 2"
        )
        assert failed.returncode == 2
        assert "copying" in failed.stdout and "disk full" in failed.stderr
        (mail,) = wait_until(mails_with(smtp, "[sentinel] FAILED"), timeout=20)
        assert mail.message["Subject"] == "[sentinel] FAILED: backup — exit 2"
        assert "error: disk full" in body_of(mail) and "copying" in body_of(mail)
        assert proc.metric("sentinel_heartbeat_up", heartbeat="backup") == 0

        ok = wrap(
            proc, "backup", sys.executable, "-c", "import time; time.sleep(0.3); print('done')"
        )
        assert ok.returncode == 0 and ok.stdout == "done\n" and ok.stderr == ""
        (recovered,) = wait_until(mails_with(smtp, "[sentinel] RECOVERED"), timeout=20)
        assert recovered.message["Subject"].startswith("[sentinel] RECOVERED: backup after ")
        assert recovered.message["In-Reply-To"] == mail.message["Message-ID"]
        assert proc.metric("sentinel_heartbeat_up", heartbeat="backup") == 1
        duration = proc.metric("sentinel_heartbeat_last_duration_seconds", heartbeat="backup")
        assert duration is not None and duration >= 0.3
        assert proc.metric("sentinel_heartbeat_pings_total", heartbeat="backup", kind="fail") == 1
        page = proc.get("/").decode()
        assert "backup" in page and "heartbeats" in page
        ping = subprocess.run(
            [
                sys.executable,
                "-m",
                "sentinel",
                "ping",
                "-c",
                str(proc.config_path),
                "backup",
                "--exit",
                "0",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert ping.returncode == 0, ping.stderr
        assert (
            proc.metric("sentinel_heartbeat_pings_total", heartbeat="backup", kind="success") == 3
        )


def test_a_job_that_never_starts_and_one_that_never_ends_are_late(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with SmtpServer() as smtp:
        proc = sentinel_proc(
            email_section(smtp.port)
            + heartbeat("never", "2s", "1s")
            + heartbeat("stuck", "1h", "2s")
        ).start()
        started = time.time()
        assert curl(f"http://127.0.0.1:{proc.port}/ping/stuck/start") == 200
        never = wait_until(mails_with(smtp, "[sentinel] LATE: never"), timeout=30)
        assert never[0].message["Subject"].startswith("[sentinel] LATE: never — no ping yet")
        stuck = wait_until(mails_with(smtp, "[sentinel] LATE: stuck"), timeout=30)
        assert "no end ping" in str(stuck[0].message["Subject"])
        assert time.time() - started >= 2  # never before grace
        status = heartbeats(proc)
        assert status["never"]["status"] == "late" and status["stuck"]["status"] == "late"
        assert proc.metric("sentinel_heartbeat_state", heartbeat="never", state="late") == 1
        # One email per incident, however long it lasts.
        assert curl(f"http://127.0.0.1:{proc.port}/ping/stuck") == 200
        wait_until(mails_with(smtp, "[sentinel] RECOVERED: stuck"), timeout=20)
        assert len(mails_with(smtp, "[sentinel] LATE: never")()) == 1


def test_after_a_restart_a_heartbeat_gets_a_full_period_again(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with SmtpServer() as smtp:
        proc = sentinel_proc(email_section(smtp.port) + heartbeat("job", "4s", "2s")).start()
        assert curl(f"http://127.0.0.1:{proc.port}/ping/job") == 200
        last_ping = heartbeats(proc)["job"]["last_ping"]
        old_deadline = time.time() + 6
        assert proc.stop() == 0
        # Sentinel is down past the heartbeat's deadline: pings sent now would be lost.
        wait_until(lambda: time.time() > old_deadline + 1, timeout=30)
        restarted = time.time()
        proc.start()
        status = heartbeats(proc)["job"]
        assert status["status"] == "up" and status["last_ping"] == last_ping  # kept
        late = wait_until(mails_with(smtp, "[sentinel] LATE: job"), timeout=40)
        assert time.time() - restarted >= 4 + 2  # every + grace from the restart
        assert "no ping since" in str(late[0].message["Subject"])


def test_a_ping_flood_is_answered_quickly_and_costs_no_writes(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    proc = sentinel_proc(heartbeat("job", "1h", "1h")).start()
    assert proc.proc is not None

    def rss_kib() -> int:
        for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    url = f"http://127.0.0.1:{proc.port}/ping/job"
    before = rss_kib()
    started = time.monotonic()
    # curl sends 1,000 requests over a few connections as fast as it can.
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-w",
            "%{http_code}\\n",
            "--max-time",
            "10",
            "--parallel",
            "--parallel-max",
            "8",
            *[arg for _ in range(1000) for arg in (url, "-o", "/dev/null")],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    codes = out.stdout.split()
    assert len(codes) == 1000
    accepted = codes.count("200")
    assert codes.count("429") == 1000 - accepted
    # The burst, then one a second: what reached the store is bounded by time, not by the flood.
    assert 1 <= accepted <= 10 + elapsed + 1
    assert (
        proc.metric("sentinel_heartbeat_pings_total", heartbeat="job", kind="success") == accepted
    )
    rejected = proc.metric("sentinel_heartbeat_pings_rejected_total", reason="rate_limited")
    assert rejected == 1000 - accepted
    assert rss_kib() - before < 8 * 1024  # no per-request memory kept
    assert proc.healthy()


def test_wrap_keeps_the_exit_code_when_sentinel_is_not_there(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(
        f'[sentinel]\nlisten = "127.0.0.1:{free_port()}"\n' + heartbeat("job", "1d", "1h")
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentinel",
            "wrap",
            "-c",
            str(config),
            "job",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert out.returncode == 7
    assert "sentinel: ping job/start failed" in out.stderr
    assert "sentinel: ping job/7 failed" in out.stderr
    assert time.monotonic() - started < 30
    # A broken config does not stop the job either.
    config.write_text("[[heartbeats]]\nname = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "sentinel", "wrap", "-c", str(config), "job", "--", "echo", "ran"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == "ran\n"
    assert "running the command without pings" in out.stderr


def test_reload_adds_and_removes_heartbeats(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    proc = sentinel_proc(heartbeat("a", "1h", "1h")).start()
    assert curl(f"http://127.0.0.1:{proc.port}/ping/a") == 200
    proc.write_config(heartbeat("b", "1h", "1h"))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: set(heartbeats(proc)) == {"b"}, timeout=20)
    assert curl(f"http://127.0.0.1:{proc.port}/ping/a") == 401
    assert curl(f"http://127.0.0.1:{proc.port}/ping/b") == 200
    assert proc.metric("sentinel_heartbeat_up", heartbeat="a") is None
    assert proc.metric("sentinel_heartbeat_up", heartbeat="b") == 1
    # An unreadable token file rejects the reload; the running config stays.
    proc.write_config(heartbeat("b", "1h", "1h", Path("/nonexistent/token")))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: proc.metric("sentinel_config_last_reload_successful") == 0, timeout=20)
    assert curl(f"http://127.0.0.1:{proc.port}/ping/b") == 200
