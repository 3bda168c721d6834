"""What a person reads at night, through the real daemon and a real SMTP server (aiosmtpd): the
DOWN emails of a refused connection, an HTTP 404 and a server that never answers, each with its
subject in words, its reason code in a header, the layer that failed, the link to the site's
page, times in the configured time zone and every text line within 78 columns."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from daemon_proc import SentinelProcess, free_port, wait_until
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
timeout = "3s"

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
        assert re.search(r"answered HTTP 404 in \d+ ms", blog)
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
