"""Alert channels through the real daemon: a signed webhook, apprise's json:// target, and an SMTP
server answering 550 to the DOWN (the fallback channel gets it, the dead letter shows in the metric,
the status page and /api/status, and `sentinel outbox retry` delivers it once the server accepts)."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from smtp_server import SmtpServer
from targets import target_server
from webhook_sink import WebhookSink

pytestmark = pytest.mark.slow

SITE = """
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2
remind_every = "0s"

[[sites]]
name = "shop"
url = "{url}"
"""


def email_section(port: int) -> str:
    return f"""
[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {port}
security = "none"
timeout = "20s"  # never reached by the working server, even on a loaded machine
"""


def outbox_cli(proc: SentinelProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", "outbox", *args, "-c", str(proc.config_path)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=proc.env,
    )


def test_a_signed_webhook_gets_the_down_and_the_recovered(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    secret = tmp_path / "webhook.secret"
    secret.write_text("s3cret\n")
    with target_server({"/shop": 200}) as target, WebhookSink() as sink:
        text = (
            SITE.format(url=target.url("/shop"))
            + f"""
[[channels]]
name = "phone"
type = "webhook"
url = "{sink.url("/hook")}"
secret_file = "{secret}"
"""
        )
        proc = sentinel_proc(text.replace("[defaults]", '[defaults]\nnotify = ["phone"]')).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 1, timeout=20)
        target.routes["/shop"] = 500
        [down] = sink.wait_for(1, timeout=30)
        payload = down.json()
        assert payload["version"] == 1 and payload["kind"] == "down"
        assert payload["site"] == "shop" and payload["url"] == target.url("/shop")
        assert payload["state"] == "firing" and payload["reason"] == "status"
        expected = "sha256=" + hmac.new(b"s3cret", down.body, hashlib.sha256).hexdigest()
        assert down.headers["X-Sentinel-Signature"] == expected
        target.routes["/shop"] = 200
        got = sink.wait_for(2, timeout=30)
        recovered = got[-1].json()
        assert recovered["kind"] == "recovered" and recovered["state"] == "resolved"
        assert recovered["incident_id"] == payload["incident_id"]
        wait_until(
            lambda: (
                proc.metric("sentinel_notifications_sent_total", channel="phone", kind="down") == 1
            ),
            timeout=20,
        )
        assert proc.stop() == 0


def test_apprise_delivers_through_its_json_scheme(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 500}) as target, WebhookSink() as sink:
        text = (
            SITE.format(url=target.url("/shop"))
            + f"""
[[channels]]
name = "chat"
type = "apprise"
urls = ["json://127.0.0.1:{sink.port}/apprise"]
"""
        )
        proc = sentinel_proc(text).start()
        [note] = sink.wait_for(1, timeout=30, path="/apprise")
        body = note.json()
        assert body["title"].startswith("[sentinel] DOWN: shop")
        assert "DOWN: shop" in body["message"]
        assert proc.stop() == 0


def test_a_550_goes_to_the_fallback_and_outbox_retry_delivers_it_later(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with (
        target_server({"/shop": 200}) as target,
        WebhookSink() as sink,
        SmtpServer() as smtp,
    ):
        smtp.fail_always("550 5.7.1 relay not permitted")
        text = (
            SITE.format(url=target.url("/shop"))
            + email_section(smtp.port)
            + f"""
[[channels]]
name = "phone"
type = "webhook"
url = "{sink.url("/hook")}"
"""
        ).replace("[defaults]", '[defaults]\nnotify = ["email"]\nfallback = "phone"')
        # The permanent-failure retries 1 s apart instead of minutes.
        proc = sentinel_proc(text, env={"SENTINEL_PERMANENT_RETRY_DELAYS": "1s,1s"}).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 1, timeout=20)
        target.routes["/shop"] = 500
        # At once after the first 550: the fallback channel has it.
        [fallback] = sink.wait_for(1, timeout=30)
        assert fallback.json()["kind"] == "down"
        # Three refusals later it is a dead letter, and everything a user looks at says so.
        wait_until(lambda: proc.metric("sentinel_dead_letters") == 1, timeout=30)
        assert "1 alert was not delivered" in proc.get("/").decode()
        assert json.loads(proc.get("/api/status"))["dead_letters"] == 1
        listing = outbox_cli(proc, "list")
        assert listing.returncode == 0, listing.stderr
        assert "dead letters: 1" in listing.stdout and "550 5.7.1" in listing.stdout
        assert not smtp.messages_received
        # The mail server is fixed; the user resends it while the daemon runs.
        smtp.fail_always(None)
        retried = outbox_cli(proc, "retry", "--all")
        assert retried.returncode == 0, retried.stderr
        [mail] = smtp.wait_for_sync(1, timeout=30)
        assert str(mail.message["Subject"]).startswith("[sentinel] DOWN: shop")
        wait_until(lambda: proc.metric("sentinel_dead_letters") == 0, timeout=30)
        assert "not delivered" not in proc.get("/").decode()
        assert len(sink.received) == 1  # the fallback had its copy once, not again on retry
        assert proc.stop() == 0


def test_a_reload_replaces_the_channels(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with target_server({"/shop": 200}) as target, WebhookSink() as sink:

        def text(path: str) -> str:
            return (
                SITE.format(url=target.url("/shop"))
                + f"""
[[channels]]
name = "phone"
type = "webhook"
url = "{sink.url(path)}"
"""
            )

        proc = sentinel_proc(text("/old")).start()
        wait_until(lambda: proc.metric("sentinel_site_up", site="shop") == 1, timeout=20)
        proc.write_config(text("/new"))
        proc.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in proc.log(), timeout=20)
        target.routes["/shop"] = 500
        [got] = sink.wait_for(1, timeout=30, path="/new")
        assert got.json()["kind"] == "down"
        assert not [r for r in sink.received if r.path == "/old"]
        assert proc.stop() == 0
