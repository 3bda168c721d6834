"""The founding story, end to end: a real process leaking memory at a known rate, watched by
`sentinel run`, produces one CREEPING email with a rate close to the truth; a process with a
steady allocate-and-free sawtooth produces none."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from early.children import LEAK, MIB, SAWTOOTH, Children
from smtp_server import SmtpServer

pytestmark = pytest.mark.slow  # every test here starts the daemon

LEAK_RATE = 5 * MIB  # bytes per second


@pytest.fixture
def kids() -> Iterator[Children]:
    children = Children()
    yield children
    children.close()


def test_a_leaking_service_gets_one_creeping_email_and_a_sawtooth_none(
    sentinel_proc: Callable[..., SentinelProcess], kids: Children, tmp_path: Path
) -> None:
    tag = "leaky-e2e-service"
    kids.start(LEAK, LEAK_RATE, 100 * MIB, 256 * 1024, tag)
    churner, _ = kids.start(SAWTOOTH, 40 * MIB, 0.15, 0.15)
    pid_file = tmp_path / "churner.pid"
    pid_file.write_text(f"{churner.pid}\n")
    short = 'sample_every = "100ms"\nwindow = "6s"\nwarn_within = "1h"\nlimit = "1GiB"\n'
    with SmtpServer() as smtp:
        proc = sentinel_proc(
            f"""
[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
security = "none"

[[watch]]
name = "salsa-party-web-server"
process = "{tag}"
{short}
[[watch]]
name = "churner"
pid_file = "{pid_file}"
{short}
"""
        ).start()
        mails = wait_until(lambda: list(smtp.messages_received), timeout=20)
        subject = str(mails[0].message["Subject"])
        assert subject.startswith("[sentinel] CREEPING: salsa-party-web-server memory +"), subject
        # "+420 GiB/day" at 5 MiB/s: check the rate in the subject within 20 %.
        match = re.search(r"\+([\d.]+) (KiB|MiB|GiB|TiB)/day", subject)
        assert match, subject
        per_day = (
            float(match.group(1))
            * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[match.group(2)]
        )
        assert per_day / 86400 == pytest.approx(LEAK_RATE, rel=0.2)
        body = mails[0].message.get_body(("plain",))
        assert body is not None and "samples" in body.get_content()
        growth = proc.metric(
            "sentinel_watch_memory_growth_bytes_per_second", watch="salsa-party-web-server"
        )
        assert growth == pytest.approx(LEAK_RATE, rel=0.25)
        assert (proc.metric("sentinel_watch_memory_bytes", watch="churner") or 0) > 0
        # Ten more samples of the churner (its metric changes with every sawtooth phase): still
        # only the one warning, nothing for the churner.
        for _ in range(10):
            before = proc.metric("sentinel_watch_memory_bytes", watch="churner")
            wait_until(
                lambda b=before: proc.metric("sentinel_watch_memory_bytes", watch="churner") != b,  # type: ignore[misc]
                5,
            )
        assert [str(m.message["Subject"]) for m in smtp.messages_received] == [subject]
        assert proc.stop() == 0
