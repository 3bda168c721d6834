"""The dead man's switch through the real daemon: a loopback sink gets its pings; a SIGSTOPped
sentinel pings no more and resumes on SIGCONT; with the only channel refusing every alert (an
SMTP server answering 550), the sink gets `/fail` with the reason, and plain pings again once the
alert is delivered. Shards: two sentinels on one file probe disjoint halves of it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from smtp_server import SmtpServer
from targets import target_server
from webhook_sink import WebhookSink

pytestmark = pytest.mark.slow

PING = "/ping/3f1c-uuid"


def deadman_section(sink: WebhookSink) -> str:
    return f'\n[deadman]\nurl = "{sink.url(PING)}"\nevery = "2s"\n'


def quiet_count(sink: WebhookSink, quiet: float, timeout: float = 60.0) -> int:
    """The number of requests once none has arrived for `quiet` seconds (a ping sent just before
    the SIGSTOP may still be on its way)."""
    deadline = time.monotonic() + timeout
    count, since = len(sink.received), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now_count = len(sink.received)
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
    raise AssertionError(f"requests kept arriving for {timeout}s: {len(sink.received)}")


def test_pings_stop_while_sentinel_is_stopped_and_resume_after(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 200}) as target, WebhookSink() as sink:
        text = f"""
[[sites]]
name = "shop"
url = "{target.url("/shop")}"
interval = "1s"
timeout = "900ms"
""" + deadman_section(sink)
        proc = sentinel_proc(text).start()
        got = sink.wait_for(3, timeout=30, path=PING)
        assert all(r.headers.get("User-Agent") == "sentinel-uptime" for r in got)
        assert got[-1].body == b"1 sites, 0 down"
        wait_until(lambda: (proc.metric("sentinel_deadman_pings_total", result="ok") or 0) >= 3)
        assert proc.metric("sentinel_deadman_pings_total", result="fail") == 0

        proc.signal(signal.SIGSTOP)
        try:
            stopped = quiet_count(sink, quiet=5.0)
            # A stopped process pings no more: whatever the wait, the count stays.
            time.sleep(6.0)
            assert len(sink.received) == stopped
        finally:
            proc.signal(signal.SIGCONT)
        sink.wait_for(stopped + 2, timeout=30, path=PING)
        assert not [r for r in sink.received if r.path.endswith("/fail")]
        assert proc.stop() == 0


def test_fail_is_pinged_while_the_only_channel_refuses_every_alert(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 500}) as target, WebhookSink() as sink, SmtpServer() as smtp:
        smtp.fail_always("550 5.7.1 relay not permitted")
        text = f"""
[[sites]]
name = "shop"
url = "{target.url("/shop")}"
interval = "1s"
timeout = "900ms"
failure_threshold = 1

[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
security = "none"
timeout = "20s"  # never reached by the server, which answers 550 at once
""" + deadman_section(sink)
        env = {"SENTINEL_PERMANENT_RETRY_DELAYS": "1s,1s"}
        proc = sentinel_proc(text, env=env).start()
        [fail, *_] = sink.wait_for(1, timeout=60, path=PING + "/fail")
        assert b"every channel is failing" in fail.body and b"550 5.7.1" in fail.body
        wait_until(lambda: (proc.metric("sentinel_deadman_pings_total", result="fail") or 0) >= 1)
        assert "pinging /fail" in proc.log()

        # The mail server is fixed and the dead letter resent: plain pings again.
        wait_until(lambda: proc.metric("sentinel_dead_letters") == 1, timeout=60)
        smtp.fail_always(None)
        retried = subprocess.run(
            [sys.executable, "-m", "sentinel", "outbox", "retry", "--all", "-c", proc.config_path],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=proc.env,
        )
        assert retried.returncode == 0, retried.stderr
        smtp.wait_for_sync(1, timeout=30)
        before = len(sink.received)
        wait_until(lambda: [r for r in sink.received[before:] if r.path == PING], timeout=30)
        assert "alerts can be delivered again" in proc.log()
        assert proc.stop() == 0


def test_a_failing_ping_is_counted_and_never_fatal(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with WebhookSink() as sink:
        sink.status = 503
        proc = sentinel_proc(deadman_section(sink)).start()
        wait_until(lambda: (proc.metric("sentinel_deadman_pings_total", result="error") or 0) >= 3)
        assert proc.healthy()
        assert proc.log().count("dead man's switch ping failed") == 1  # rate-limited
        sink.status = 200
        wait_until(lambda: (proc.metric("sentinel_deadman_pings_total", result="ok") or 0) >= 1)
        assert "dead man's switch reachable again" in proc.log()
        assert proc.stop() == 0


def test_a_reload_starts_and_stops_the_pings(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with WebhookSink() as sink:
        proc = sentinel_proc("").start()
        proc.write_config(deadman_section(sink))
        proc.signal(signal.SIGHUP)
        sink.wait_for(2, timeout=30, path=PING)
        proc.write_config("")
        proc.signal(signal.SIGHUP)
        wait_until(lambda: proc.log().count("config reloaded") == 2, timeout=20)
        stopped = quiet_count(sink, quiet=5.0)
        assert stopped >= 2
        assert proc.stop() == 0


def test_two_shards_probe_disjoint_halves_of_one_list(tmp_path: Path) -> None:
    names = [f"site-{i}" for i in range(12)]
    # The sink answers every probe 200 and records who asked (each shard its own User-Agent).
    with WebhookSink() as target:
        sites = "".join(
            f'\n[[sites]]\nname = "{n}"\nurl = "{target.url("/" + n)}"\ninterval = "1s"\n'
            f'timeout = "900ms"\n'
            for n in names
        )
        procs = []
        try:
            for k in (1, 2):
                (tmp_path / str(k)).mkdir()
                proc = SentinelProcess(tmp_path / str(k), sites)
                header = f'[sentinel]\nshard = "{k}/2"\nuser_agent = "shard-{k}"\n'
                text = proc.config_path.read_text().replace("[sentinel]\n", header, 1)
                proc.config_path.write_text(text)
                procs.append(proc)
                proc.start()
            owned = [set(wait_until(p.status, timeout=20)) for p in procs]
            assert owned[0].isdisjoint(owned[1])
            assert owned[0] | owned[1] == set(names)
            for k, (proc, mine) in enumerate(zip(procs, owned, strict=True), start=1):
                assert f"shard {k}/2: {len(mine)} of 12 sites" in proc.log()
                wait_until(
                    lambda p=proc, m=mine: all(  # type: ignore[misc]
                        p.metric("sentinel_site_up", site=n) == 1 for n in m
                    ),
                    timeout=30,
                )
                text = proc.metrics_text()
                assert not [n for n in names if n not in mine and f'site="{n}"' in text]
            probed = {(r.headers.get("User-Agent"), r.path.strip("/")) for r in target.received}
            for k, mine in enumerate(owned, start=1):
                assert {path for agent, path in probed if agent == f"shard-{k}"} == mine
        finally:
            for proc in procs:
                proc.stop()
        # Stopped, `sentinel status` reads the store: this shard's sites only, as the daemon.
        status = subprocess.run(
            [sys.executable, "-m", "sentinel", "status", "-c", procs[0].config_path],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=procs[0].env,
        )
        listed = {word for word in status.stdout.split() if word.startswith("site-")}
        assert listed == owned[0], status.stdout + status.stderr


def test_two_sentinels_are_each_others_dead_mans_switch(tmp_path: Path) -> None:
    """README's recipe: A's [deadman] pings a heartbeat of B (healthchecks-compatible URLs), so B
    says LATE when A stops, and RECOVERED when it pings again."""
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    b = SentinelProcess(
        tmp_path / "b", '[[heartbeats]]\nname = "sentinel-a"\nevery = "2s"\ngrace = "4s"\n'
    )
    a = SentinelProcess(
        tmp_path / "a",
        f'[deadman]\nurl = "http://127.0.0.1:{b.port}/ping/sentinel-a"\nevery = "2s"\n',
    )

    def heartbeat() -> str:
        [beat] = json.loads(b.get("/api/status"))["heartbeats"]
        return str(beat["status"])

    try:
        b.start()
        a.start()
        wait_until(lambda: heartbeat() == "up", timeout=30)
        a.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: heartbeat() == "late", timeout=30)
        finally:
            a.signal(signal.SIGCONT)
        wait_until(lambda: heartbeat() == "up", timeout=30)
        assert "LATE heartbeat=sentinel-a" in b.log()
        assert "RECOVERED heartbeat=sentinel-a" in b.log()
    finally:
        for proc in (a, b):
            if proc.proc is not None:
                proc.stop()
