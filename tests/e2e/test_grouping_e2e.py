"""Outage grouping and the network canary through the real daemon and a real SMTP server: six
sites failing together give one DOWN email and threaded RECOVEREDs, the HTTP and TCP checks of one
host one DOWN and one RECOVERED, and a lost network one NETWORK email instead of site alerts."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from daemon_proc import SentinelProcess, wait_until
from smtp_server import SmtpServer
from targets import target_server
from webhook_sink import WebhookSink

EMAIL = """
[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine
"""

# Sites that fail together must all be judged down within this window of the first one to be one
# alert. Their probes run in one process, so a loaded machine delays them alike, but they are
# staggered by their own interval phases and retries: 15 s is several of those, with room to spare.
GROUP_WAIT = "15s"

FAST = """
[defaults]
interval = "1s"
timeout = "900ms"
retry_interval = "1s"
failure_threshold = 2
flap_changes = 0
"""


def subjects(smtp: SmtpServer, word: str) -> list[str]:
    return [
        str(m.message["Subject"])
        for m in smtp.messages_received
        if str(m.message["Subject"]).startswith(f"[sentinel] {word}")
    ]


def mails(smtp: SmtpServer, word: str) -> list[dict[str, str]]:
    return [
        {k: str(m.message[k]) for k in ("Subject", "Message-ID", "In-Reply-To", "X-Sentinel-Group")}
        for m in smtp.messages_received
        if str(m.message["Subject"]).startswith(f"[sentinel] {word}")
    ]


def sites_in(mail: dict[str, str]) -> int:
    group = mail["X-Sentinel-Group"]
    return 1 if group == "None" else int(group)


class PortSwitch:
    """A loopback port (`port`) that refuses connections until switched on (`switch(True)`:
    listen) and again when switched off."""

    def __init__(self) -> None:
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        self.port = int(first.getsockname()[1])
        self._holder = [first]  # bound, not listening: refused

    def __call__(self, on: bool) -> None:
        self._holder.pop().close()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        if on:
            s.listen(16)
        self._holder.append(s)

    def close(self) -> None:
        for s in self._holder:
            s.close()


@contextmanager
def port_switch() -> Iterator[PortSwitch]:
    switch = PortSwitch()
    try:
        yield switch
    finally:
        switch.close()


@pytest.mark.slow
def test_six_sites_failing_together_give_one_down_email_and_threaded_recoveries(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    names = ["blog", "shop", "wiki", "mail", "api", "cdn"]
    with target_server({f"/{n}": 200 for n in names}) as target, SmtpServer() as smtp:
        sites = "".join(f'[[sites]]\nname = "{n}"\nurl = "{target.url("/" + n)}"\n' for n in names)
        proc = sentinel_proc(  # the lines up to [defaults] go on in [sentinel]
            f"""
group_wait = "{GROUP_WAIT}"
group_min = 3
{FAST}
{EMAIL.format(smtp_port=smtp.port)}
{sites}"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="cdn") == 1, timeout=20)
        target.routes.update({f"/{n}": 500 for n in names})
        wait_until(lambda: subjects(smtp, "DOWN"), timeout=40)
        (down,) = mails(smtp, "DOWN")
        assert down["Subject"].startswith("[sentinel] DOWN: 6 sites — ")
        assert down["X-Sentinel-Group"] == "6"
        assert down["In-Reply-To"] == "None"
        target.routes.update({f"/{n}": 200 for n in names})
        wait_until(lambda: sum(sites_in(m) for m in mails(smtp, "RECOVERED")) == 6, timeout=40)
        recovered = mails(smtp, "RECOVERED")
        # Recoveries close together are grouped too; every one replies to the grouped DOWN.
        assert recovered[0]["Subject"].startswith("[sentinel] RECOVERED: 6 sites — ")
        assert all(m["In-Reply-To"] == down["Message-ID"] for m in recovered)
        assert len(subjects(smtp, "DOWN")) == 1
        assert proc.metric("sentinel_outbox_pending") == 0


@pytest.mark.slow
def test_http_and_tcp_checks_of_one_host_give_one_down_and_one_recovered(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with (
        target_server({"/web": 200}) as target,
        port_switch() as db,
        port_switch() as other,
        SmtpServer() as smtp,
    ):
        db(True)
        other(True)
        proc = sentinel_proc(  # the lines up to [defaults] go on in [sentinel]
            f"""
group_wait = "{GROUP_WAIT}"
group_min = 5
{FAST}
{EMAIL.format(smtp_port=smtp.port)}
[[sites]]
name = "web"
url = "{target.url("/web")}"
[[sites]]
name = "web-db"
tcp = "127.0.0.1:{db.port}"
[[sites]]
name = "elsewhere"
tcp = "localhost:{other.port}"
"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="elsewhere") == 1, timeout=20)
        target.routes["/web"] = 500
        db(False)
        other(False)
        wait_until(lambda: len(subjects(smtp, "DOWN")) == 2, timeout=40)
        downs = sorted(subjects(smtp, "DOWN"))
        # One host, two checks: one email although group_min is 5; another host: its own.
        assert downs[0] == "[sentinel] DOWN: 2 sites — web, web-db" or downs[0].startswith(
            "[sentinel] DOWN: 2 sites — web-db, web"
        )
        assert downs[1].startswith("[sentinel] DOWN: elsewhere — ")
        target.routes["/web"] = 200
        db(True)
        wait_until(lambda: subjects(smtp, "RECOVERED"), timeout=40)
        (recovered,) = mails(smtp, "RECOVERED")
        assert recovered["X-Sentinel-Group"] == "2"
        group = next(m for m in mails(smtp, "DOWN") if m["X-Sentinel-Group"] == "2")
        assert recovered["In-Reply-To"] == group["Message-ID"]
        assert len(subjects(smtp, "DOWN")) == 2


@pytest.mark.slow
def test_when_every_canary_fails_one_network_email_holds_the_site_alerts(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 200}) as target, port_switch() as canary, SmtpServer() as smtp:
        canary(True)
        proc = sentinel_proc(  # the lines up to [defaults] go on in [sentinel]
            f"""
canaries = ["tcp://127.0.0.1:{canary.port}"]
{FAST}
{EMAIL.format(smtp_port=smtp.port)}
[[sites]]
name = "shop"
url = "{target.url("/shop")}"
"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 1, timeout=20)
        assert proc.metric("sentinel_network_up") == 1
        canary(False)  # the network is gone ...
        wait_until(lambda: proc.metric("sentinel_network_up") == 0, timeout=20)
        target.routes["/shop"] = 500  # ... and so is every site, as far as sentinel can tell
        wait_until(lambda: subjects(smtp, "NETWORK"), timeout=30)
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 0, timeout=20)
        (network,) = mails(smtp, "NETWORK")
        assert network["Subject"] == "[sentinel] NETWORK: sentinel cannot reach the internet"
        data = proc.get("/api/status")
        assert b'"up": false' in data
        assert b"sentinel cannot reach the internet" in proc.get("/")
        assert subjects(smtp, "DOWN") == []  # held
        canary(True)  # the network is back; the site is still down
        wait_until(lambda: subjects(smtp, "RECOVERED") and subjects(smtp, "DOWN"), timeout=30)
        (recovered,) = mails(smtp, "RECOVERED")
        assert recovered["Subject"].startswith("[sentinel] RECOVERED: network — ")
        assert recovered["In-Reply-To"] == network["Message-ID"]
        (down,) = subjects(smtp, "DOWN")
        assert down.startswith("[sentinel] DOWN: shop — ")
        assert smtp.messages_received[0].message["Subject"] == network["Subject"]
        assert proc.metric("sentinel_network_up") == 1


@pytest.mark.slow
def test_alerts_waiting_to_be_grouped_survive_kill_9(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    names = ["blog", "shop", "wiki"]
    with target_server({f"/{n}": 200 for n in names}) as target, SmtpServer() as smtp:
        sites = "".join(f'[[sites]]\nname = "{n}"\nurl = "{target.url("/" + n)}"\n' for n in names)
        proc = sentinel_proc(  # the lines up to [defaults] go on in [sentinel]
            f"""
group_wait = "60s"
{FAST}
{EMAIL.format(smtp_port=smtp.port)}
{sites}"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="wiki") == 1, timeout=20)
        target.routes.update({f"/{n}": 500 for n in names})
        # All three DOWNs are in the outbox, waiting for others to join them ...
        wait_until(lambda: proc.metric("sentinel_outbox_pending") == 3, timeout=30)
        assert all(proc.status()[n]["status"] == "down" for n in names)
        proc.kill9()  # ... when sentinel dies
        assert smtp.messages_received == []
        proc.write_config(proc.config_text.replace('group_wait = "60s"', 'group_wait = "2s"'))
        proc.start()
        wait_until(lambda: subjects(smtp, "DOWN"), timeout=30)
        (down,) = subjects(smtp, "DOWN")
        head, _, listed = down.partition(" — ")
        assert head == "[sentinel] DOWN: 3 sites"  # in the order they went down
        assert sorted(listed.split(", ")) == names
        wait_until(lambda: proc.metric("sentinel_outbox_pending") == 0, timeout=10)
        assert len(smtp.messages_received) == 1


@pytest.mark.slow
def test_a_group_is_one_email_one_apprise_note_and_each_site_on_a_webhook(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    names = ["blog", "shop", "wiki"]
    with (
        target_server({f"/{n}": 200 for n in names}) as target,
        WebhookSink() as sink,
        SmtpServer() as smtp,
    ):
        sites = "".join(f'[[sites]]\nname = "{n}"\nurl = "{target.url("/" + n)}"\n' for n in names)
        proc = sentinel_proc(  # the lines up to [defaults] go on in [sentinel]
            f"""
group_wait = "{GROUP_WAIT}"
{FAST}
{EMAIL.format(smtp_port=smtp.port)}
[[channels]]
name = "chat"
type = "apprise"
urls = ["json://127.0.0.1:{sink.port}/apprise"]

[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{sink.port}/hook"
{sites}"""
        ).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="wiki") == 1, timeout=20)
        target.routes.update({f"/{n}": 500 for n in names})
        hooks = sink.wait_for(3, timeout=40, path="/hook")
        assert sorted(h.json()["site"] for h in hooks) == names  # one payload per site
        [note] = sink.wait_for(1, timeout=60, path="/apprise")
        assert note.json()["title"].startswith("[sentinel] DOWN: 3 sites — ")
        for name in names:
            assert f"{name}: HTTP 500 (expected 2xx)" in note.json()["message"]
        wait_until(lambda: subjects(smtp, "DOWN"), timeout=20)
        wait_until(lambda: proc.metric("sentinel_outbox_pending") == 0, timeout=20)
        assert [s.partition(" — ")[0] for s in subjects(smtp, "DOWN")] == [
            "[sentinel] DOWN: 3 sites"
        ]
        assert len(sink.wait_for(1, timeout=1, path="/apprise")) == 1
