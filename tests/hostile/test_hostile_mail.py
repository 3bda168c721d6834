"""Mail servers that misbehave, through the running daemon: each fault gives a clear log line, is
counted in sentinel_email_failures_total, and loses nothing that can still be delivered.

The five scenarios run side by side (one daemon and one mail server each, started together by a
module fixture), because the outbox's real backoff (2 s, 4 s, ...) makes each one take seconds;
each test then waits for its own scenario's outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from hostile_server import HostileServer
from raw_smtp import DataCloser

from daemon_proc import SentinelProcess, wait_until
from smtp_server import SmtpServer
from targets import TargetServer, target_server

pytestmark = pytest.mark.slow  # every test here starts the daemon

SCENARIOS = ("closed-in-data", "421-then-accept", "slower-than-deadline", "no-starttls", "550")


# The daemon's SMTP timeout. A working server must never hit it, even on a loaded machine (a
# spurious timeout would add a failure and a resend to the exact counts asserted below); only the
# server that never answers ("slower-than-deadline") does, after SLOW_SMTP_TIMEOUT.
SMTP_TIMEOUT = "20s"
SLOW_SMTP_TIMEOUT = "5s"


def config(url: str, port: int, security: str = "none", smtp_timeout: str = SMTP_TIMEOUT) -> str:
    return (
        '[defaults]\ninterval = "1s"\ntimeout = "500ms"\nfailure_threshold = 1\n'
        'remind_every = "0s"\n'
        '[email]\nfrom = "sentinel <s@example.org>"\nto = ["owner@example.org"]\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsecurity = "{security}"\n'
        f'timeout = "{smtp_timeout}"\n'
        f'[[sites]]\nname = "shop"\nurl = "{url}"\n'
    )


@dataclass
class Lab:
    target: TargetServer
    daemons: dict[str, SentinelProcess]
    closer: DataCloser
    try_later: SmtpServer
    silent: HostileServer
    plain: SmtpServer  # offers no STARTTLS
    refusing: SmtpServer

    def metric(self, scenario: str, name: str, **labels: str) -> float:
        return self.daemons[scenario].metric(name, **labels) or 0

    def log_lines(self, scenario: str, fragment: str) -> list[str]:
        return [line for line in self.daemons[scenario].log().splitlines() if fragment in line]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(target_server({f"/{s}": 500 for s in SCENARIOS}))
        closer = stack.enter_context(DataCloser(drop_first=1))
        try_later = stack.enter_context(SmtpServer())
        try_later.script("421 4.3.2 try again later")
        silent = stack.enter_context(HostileServer(fixed="tcp-silent"))
        plain = stack.enter_context(SmtpServer())
        refusing = stack.enter_context(SmtpServer())
        refusing.fail_always("550 5.7.1 relaying denied")
        ports = {
            "closed-in-data": (closer.port, "none"),
            "421-then-accept": (try_later.port, "none"),
            "slower-than-deadline": (silent.port, "none"),
            "no-starttls": (plain.port, "starttls"),
            "550": (refusing.port, "none"),
        }
        # Permanent failures are retried 1 s apart instead of 1, 5 and 15 minutes.
        env = {"SENTINEL_PERMANENT_RETRY_DELAYS": "1s,1s"}
        daemons = {}
        for name, (port, security) in ports.items():
            tmp = tmp_path_factory.mktemp(name)
            url = target.url(f"/{name}")
            timeout = SLOW_SMTP_TIMEOUT if name == "slower-than-deadline" else SMTP_TIMEOUT
            daemons[name] = SentinelProcess(tmp, config(url, port, security, timeout), env=env)
        try:
            with ThreadPoolExecutor(len(daemons)) as pool:  # start together: the scenarios overlap
                list(pool.map(lambda d: d.start(), daemons.values()))
            yield Lab(target, daemons, closer, try_later, silent, plain, refusing)
        finally:
            for daemon in daemons.values():
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.proc.kill()
                    daemon.proc.wait()


def assert_no_traceback(lab: Lab, scenario: str) -> None:
    assert "Traceback" not in lab.daemons[scenario].log()


def test_connection_closed_during_data_is_retried_and_delivered_once(lab: Lab) -> None:
    name = "closed-in-data"
    wait_until(lab.closer.messages, timeout=60)
    wait_until(lambda: lab.metric(name, "sentinel_outbox_pending") == 0, timeout=60)
    assert lab.closer.dropped == 1
    [mail] = lab.closer.messages()
    assert str(mail["Subject"]).startswith("[sentinel] DOWN: shop")
    assert lab.metric(name, "sentinel_email_failures_total") == 1
    assert lab.metric(name, "sentinel_emails_sent_total", kind="down") == 1
    [line] = lab.log_lines(name, "WARNING sentinel email not sent")
    assert "connection lost" in line and "during send" in line, line
    assert_no_traceback(lab, name)


def test_421_then_accept_delivers_once(lab: Lab) -> None:
    name = "421-then-accept"
    [mail] = lab.try_later.wait_for_sync(1, timeout=60)
    wait_until(lambda: lab.metric(name, "sentinel_outbox_pending") == 0, timeout=60)
    assert str(mail.message["Subject"]).startswith("[sentinel] DOWN: shop")
    assert lab.try_later.attempts == 2
    assert len(lab.try_later.received()) == 1
    assert lab.metric(name, "sentinel_email_failures_total") == 1
    [line] = lab.log_lines(name, "WARNING sentinel email not sent")
    assert "421 4.3.2 try again later" in line, line
    [retry] = lab.log_lines(name, "email not sent, retrying in")
    assert "site=shop attempt=1" in retry, retry
    assert_no_traceback(lab, name)


def test_server_slower_than_the_deadline_times_out_and_the_email_waits_for_a_good_one(
    lab: Lab,
) -> None:
    name = "slower-than-deadline"
    wait_until(lambda: lab.metric(name, "sentinel_email_failures_total") >= 1, timeout=60)
    line = lab.log_lines(name, "WARNING sentinel email not sent")[0]
    assert f"timed out after {SLOW_SMTP_TIMEOUT}" in line, line
    assert lab.metric(name, "sentinel_outbox_pending") == 1  # kept, not dropped
    # The server comes back working, on the same port: the kept email goes out, once.
    port = lab.silent.port
    lab.silent.stop()
    with SmtpServer(port=port) as healthy:
        [mail] = healthy.wait_for_sync(1, timeout=60)
        wait_until(lambda: lab.metric(name, "sentinel_outbox_pending") == 0, timeout=60)
        assert str(mail.message["Subject"]).startswith("[sentinel] DOWN: shop")
        assert len(healthy.received()) == 1
    assert_no_traceback(lab, name)


def test_starttls_demanded_but_not_offered_gives_up_without_sending_in_clear(lab: Lab) -> None:
    name = "no-starttls"
    wait_until(lambda: lab.log_lines(name, "email given up"), timeout=60)
    [line] = lab.log_lines(name, "email given up")
    assert " ERROR " in line and "does not offer STARTTLS" in line, line
    assert lab.plain.attempts == 0 and lab.plain.received() == []  # never sent in the clear
    assert lab.metric(name, "sentinel_email_failures_total") == 3
    assert lab.metric(name, "sentinel_outbox_pending") == 0
    assert_no_traceback(lab, name)


def test_550_is_given_up_after_retries_and_later_emails_still_go_out(lab: Lab) -> None:
    name = "550"
    wait_until(lambda: lab.log_lines(name, "email given up"), timeout=60)
    [line] = lab.log_lines(name, "email given up")
    assert " ERROR " in line and "550 5.7.1 relaying denied" in line and "kind=down" in line
    assert lab.refusing.attempts == 3
    assert lab.metric(name, "sentinel_email_failures_total") == 3
    # The server accepts again and the site recovers: the next email goes out.
    lab.refusing.fail_always(None)
    lab.target.routes[f"/{name}"] = 200
    [mail] = lab.refusing.wait_for_sync(1, timeout=60)
    assert str(mail.message["Subject"]).startswith("[sentinel] RECOVERED: shop")
    wait_until(
        lambda: lab.metric(name, "sentinel_emails_sent_total", kind="recovered") == 1, timeout=60
    )
    assert_no_traceback(lab, name)


def test_every_daemon_stops_cleanly(lab: Lab) -> None:
    for name, daemon in lab.daemons.items():
        assert daemon.stop() == 0, name
