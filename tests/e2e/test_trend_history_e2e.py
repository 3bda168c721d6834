"""Early warnings across a restart of `sentinel run`, and a watch that cannot be read, as the
owner sees them: the emails that arrive, /metrics, /api/status and the status page."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from early.children import LEAK, MIB, Children
from smtp_server import SmtpServer

pytestmark = pytest.mark.slow  # every test here starts the daemon

LEAK_RATE = 5 * MIB  # bytes per second
SHORT = 'sample_every = "100ms"\nwindow = "6s"\nwarn_within = "1h"\nlimit = "1GiB"\n'


@pytest.fixture
def kids() -> Iterator[Children]:
    children = Children()
    yield children
    children.close()


def email_config(port: int) -> str:
    return (
        '[email]\nfrom = "sentinel <sentinel@example.org>"\nto = ["owner@example.org"]\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsecurity = "none"\n'
    )


def test_a_restart_of_sentinel_neither_warns_again_nor_loses_the_resolved(
    sentinel_proc: Callable[..., SentinelProcess], kids: Children
) -> None:
    tag = "leaky-service-across-sentinel-restarts"
    leaker, _ = kids.start(LEAK, LEAK_RATE, 200 * MIB, 256 * 1024, tag)
    with SmtpServer() as smtp:
        proc = sentinel_proc(
            email_config(smtp.port) + f'[[watch]]\nname = "shop"\nprocess = "{tag}"\n{SHORT}'
        ).start()
        (warning,) = wait_until(lambda: list(smtp.messages_received), timeout=30)
        subject = str(warning.message["Subject"])
        assert subject.startswith("[sentinel] CREEPING: shop memory +"), subject
        assert proc.stop() == 0

        proc.start()  # the same state_dir: the trend and its warning come back
        growth: set[float] = set()

        def three_evaluations() -> bool:
            value = proc.metric("sentinel_watch_memory_growth_bytes_per_second", watch="shop")
            if value is not None and not math.isnan(value):
                growth.add(value)
            return len(growth) >= 3

        # Three evaluations after the restart, the leak still going: no second CREEPING email.
        wait_until(three_evaluations, timeout=30)
        assert [str(m.message["Subject"]) for m in smtp.messages_received] == [subject]

        leaker.kill()  # the leaking service restarts: the warning from before is resolved
        leaker.wait()
        kids.start(LEAK, LEAK_RATE, 10 * MIB, 256 * 1024, tag)
        mails = wait_until(lambda: smtp.messages_received[1:], timeout=30)
        resolved = mails[0].message
        assert (
            str(resolved["Subject"])
            == f"[sentinel] RESOLVED: {subject.removeprefix('[sentinel] ')}"
        )
        assert resolved["In-Reply-To"] == warning.message["Message-ID"]
        assert proc.stop() == 0


def test_a_watch_that_can_never_be_read_says_so_everywhere(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    missing = tmp_path / "never-written.pid"
    proc = sentinel_proc(f'[[watch]]\nname = "ghost"\npid_file = "{missing}"\n{SHORT}').start()
    wait_until(lambda: proc.metric("sentinel_watch_readable", watch="ghost") == 0, timeout=15)
    for name in (
        "sentinel_watch_memory_bytes",
        "sentinel_watch_memory_growth_bytes_per_second",
        "sentinel_watch_seconds_to_limit",
    ):
        value = proc.metric(name, watch="ghost")
        assert value is not None and math.isnan(value), (name, value)
    (watch,) = [w for w in json.loads(proc.get("/api/status"))["watches"] if w["watch"] == "ghost"]
    assert watch["state"] == "unreadable" and str(missing) in watch["error"]
    assert b"<td>ghost</td><td>UNREADABLE</td>" in proc.get("/")
    log = proc.log()
    assert log.count("cannot sample watch=ghost") == 1, log
    assert proc.stop() == 0
