"""What a person reads at night, through the real daemon and a real SMTP server (aiosmtpd): the
DOWN emails of a refused connection, an HTTP 404 and a server that never answers, each with its
subject in words, its reason code in a header, the layer that failed, the link to the site's
page, times in the configured time zone and every text line within 78 columns."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, free_port, wait_until
from early.children import MIB
from early.test_sources import write_unit
from smtp_server import ReceivedMail, SmtpServer
from targets import target_server

pytestmark = pytest.mark.slow  # starts the daemon


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake (a listen backlog) but that never
    accepts nor answers: a probe of it waits for its timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def config(smtp_port: int, page_url: str, refused_url: str, silent_url: str) -> str:
    # (the harness writes the [sentinel] header: these keys continue it)
    return f"""
timezone = "Europe/Zurich"
group_wait = "0s"

[status_page]
public_url = "https://status.example.org/"

[defaults]
interval = "3s"
timeout = "1s"
failure_threshold = 2
retry_interval = "1s"
remind_every = "0s"

[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine

[[sites]]
name = "blog"
url = "{page_url}"
expect_status = [200]

[[sites]]
name = "api"
url = "{refused_url}"

[[sites]]
name = "slow"
url = "{silent_url}"
timeout = "2s"
"""


def by_site(mails: list[ReceivedMail]) -> dict[str, ReceivedMail]:
    return {str(m.message["X-Sentinel-Site"]): m for m in mails}


def text(mail: ReceivedMail) -> str:
    part = mail.message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # (as received over SMTP)


def test_down_emails_say_in_words_what_failed_and_where(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/"
    with target_server({}) as target, silent_server() as silent_port, SmtpServer() as smtp:
        silent = f"http://127.0.0.1:{silent_port}/"
        proc = sentinel_proc(config(smtp.port, target.url("/gone"), refused, silent)).start()
        mails = wait_until(
            lambda: (m := list(smtp.messages_received)) and len(by_site(m)) >= 3 and m,
            timeout=60,
        )
        downs = by_site(mails)
        assert sorted(downs) == ["api", "blog", "slow"]

        subjects = {site: str(mail.message["Subject"]) for site, mail in downs.items()}
        assert subjects == {
            "blog": "[sentinel] DOWN: blog — HTTP 404 (expected 200)",
            "api": "[sentinel] DOWN: api — connection refused",
            "slow": "[sentinel] DOWN: slow — no answer within 2s",
        }
        reasons = {site: str(mail.message["X-Sentinel-Reason"]) for site, mail in downs.items()}
        assert reasons == {"blog": "status", "api": "connect_refused", "slow": "timeout"}

        blog, api, slow = text(downs["blog"]), text(downs["api"]), text(downs["slow"])
        assert blog.startswith("blog is DOWN: HTTP 404 (expected 200).\n")
        assert "Failed at the application's answer (connect worked)" in blog
        assert re.search(r"answered HTTP 404 in (?:\d+|< 1) ms", blog)
        assert re.search(r"Status page:\s+https://status\.example\.org/sites/blog\n", blog)
        assert re.search(r"Down since:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0[12]:00 \(CES?T\)", blog)
        assert "Failed at connect: no TCP connection" in api
        assert "connection refused by 127.0.0.1:" in api
        assert "Failed at the application's answer (connect worked)" in slow
        assert "no answer within 2 s" in slow
        for body in (blog, api, slow):
            assert all(len(line) <= 78 for line in body.split("\n"))
            rows = [line for line in body.split("\n") if "  FAILED  " in line]
            assert rows and all(re.search(r"FAILED\s+\S+(?: \d+)?\s+—", r) for r in rows), rows
            assert " 0 ms" not in body
        html = downs["api"].message.get_body(("html",))
        assert html is not None
        assert '<span class="state bad">\u25bc DOWN</span>' in html.get_content()
        assert proc.metric("sentinel_emails_sent_total", kind="down") == 3


def test_the_founding_story_is_one_email(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    """A site that runs on a local service (`watch = ["blog-app"]`) whose cgroup (files written
    as the kernel shows them) reports OOM kills: its DOWN email says so at the top."""
    cgroup = tmp_path / "cgroup"
    unit = write_unit(cgroup, "blog-app.service", limit=str(512 * MIB))
    with target_server({"/blog": 200}) as target, SmtpServer() as smtp:
        proc = sentinel_proc(
            f"""
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2
remind_every = "0s"

[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
security = "none"

[[watch]]
name = "blog-app"
unit = "blog-app.service"
cgroup_root = "{cgroup}"
sample_every = "100ms"
window = "6s"

[[sites]]
name = "blog"
url = "{target.url("/blog")}"
watch = ["blog-app"]
"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_watch_memory_bytes", watch="blog-app"), 20)
        wait_until(lambda: proc.metric("sentinel_site_up", site="blog") == 1, timeout=20)
        (unit / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 3\noom_kill 3\n")
        wait_until(
            lambda: any(
                "OOM: blog-app" in str(m.message["Subject"]) for m in smtp.messages_received
            ),
            timeout=20,
        )
        target.routes["/blog"] = 502
        down = wait_until(
            lambda: [
                m
                for m in smtp.messages_received
                if str(m.message["Subject"]).startswith("[sentinel] DOWN: blog")
            ],
            timeout=30,
        )[0]
        assert str(down.message["Subject"]) == "[sentinel] DOWN: blog — HTTP 502 (expected 2xx)"
        body = text(down)
        assert body.startswith(
            "blog is DOWN: HTTP 502 (expected 2xx).\n"
            "blog-app was OOM-killed 3 times in the last hour.\n"
        ), body
        assert "On this host:\n  - blog-app (unit blog-app.service): OOM-killed 3 times" in body
        assert "  - blog-app memory 200 MiB of 512 MiB (memory.max, 39%)" in body
