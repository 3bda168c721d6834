"""The pure parts of alert delivery: routing, fallback decisions, stale reminders, late emails,
the versioned payload, Alertmanager's body, the webhook signature, and the channel config."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import ConfigError, EmailConfig, load_config, parse_config
from sentinel.monitor import (
    CertExpiring,
    Flapping,
    Recovered,
    Stable,
    Status,
    StillDown,
    WentDown,
)
from sentinel.notify.channels.alertmanager import alertmanager_body, alertmanager_labels
from sentinel.notify.channels.email import build_alert_message, mark_late
from sentinel.notify.channels.http import verdict
from sentinel.notify.channels.webhook import sign, webhook_body
from sentinel.notify.message import build_message, incident_message_id
from sentinel.notify.outbox import parse_message
from sentinel.notify.payload import (
    alert_from_event,
    decode_alert,
    encode_alert,
)
from sentinel.notify.policy import (
    LATE_AFTER,
    late_note,
    permanent_delay,
    recipients,
    should_escalate,
    superseded,
)

CHANNELS = [("email", "email"), ("phone", "webhook"), ("am", "alertmanager")]
EMAIL = EmailConfig(sender="sentinel <s@example.org>", recipients=("o@example.org",))

names = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


# ------------------------------------------------------------------ routing and fallback


def test_default_notify_is_every_channel_and_alertmanager_skips_reminders() -> None:
    assert recipients("down", None, CHANNELS) == ("email", "phone", "am")
    assert recipients("still_down", None, CHANNELS) == ("email", "phone")
    assert recipients("down", ["phone"], CHANNELS) == ("phone",)
    assert recipients("recovered", ["am", "email"], CHANNELS) == ("email", "am")


@given(
    kind=st.sampled_from(["down", "still_down", "recovered", "certificate", "disk"]),
    notify=st.none() | st.lists(st.sampled_from(["email", "phone", "am"]), max_size=3),
)
def test_recipients_are_configured_channels_in_config_order(
    kind: str, notify: list[str] | None
) -> None:
    got = recipients(kind, notify, CHANNELS)
    order = [n for n, _ in CHANNELS]
    assert list(got) == sorted(got, key=order.index)
    assert len(set(got)) == len(got)
    if notify is not None:
        assert set(got) <= set(notify)


@given(
    permanent=st.booleans(),
    escalated=st.booleans(),
    created=times,
    now=times,
    after=st.none() | st.floats(min_value=1, max_value=1e6),
    fallback=st.sampled_from([None, "email", "phone"]),
)
def test_escalation_happens_once_never_to_itself(
    permanent: bool,
    escalated: bool,
    created: float,
    now: float,
    after: float | None,
    fallback: str | None,
) -> None:
    go = should_escalate(
        channel="email",
        fallback=fallback,
        escalated=escalated,
        permanent=permanent,
        created_at=created,
        escalate_after=after,
        now=now,
    )
    if go:
        assert fallback == "phone" and not escalated
        assert permanent or (after is not None and now - created >= after)
    elif fallback == "phone" and not escalated:
        assert not permanent and (after is None or now - created < after)


def test_a_permanent_failure_escalates_at_once_a_transient_one_after_escalate_after() -> None:
    common: dict[str, Any] = {
        "channel": "email",
        "fallback": "phone",
        "escalated": False,
        "created_at": 0.0,
    }
    assert should_escalate(**common, permanent=True, escalate_after=None, now=1.0)
    assert not should_escalate(**common, permanent=False, escalate_after=600.0, now=599.0)
    assert should_escalate(**common, permanent=False, escalate_after=600.0, now=600.0)


def test_permanent_failures_are_retried_on_the_schedule_then_given_up() -> None:
    delays = (60.0, 300.0, 900.0)
    assert [permanent_delay(n, delays) for n in (1, 2, 3, 4)] == [60.0, 300.0, 900.0, None]


@given(st.lists(st.sampled_from(["down", "still_down", "recovered", "certificate"])))
def test_only_a_reminder_with_a_later_reminder_or_recovery_is_stale(later: list[str]) -> None:
    assert superseded("still_down", later) == any(k in ("still_down", "recovered") for k in later)
    for kind in ("down", "recovered", "certificate"):
        assert not superseded(kind, later)


@given(created=times, delay=st.floats(min_value=-1e6, max_value=1e7, allow_nan=False))
def test_a_late_note_appears_exactly_when_late(created: float, delay: float) -> None:
    note = late_note(created, created + delay)
    assert (note is not None) == (created + delay - created >= LATE_AFTER)
    assert late_note(created, math.nan) is None


# ------------------------------------------------------------------ payload


def went_down(site: str = "shop", at: float = 1_800_000_100.0) -> WentDown:
    return WentDown(
        site=site,
        incident_id="inc1",
        since=1_800_000_000.0,
        at=at,
        reason="status",
        message="HTTP 500",
        recent=(),
    )


def test_the_webhook_payload_is_version_1_with_every_documented_field() -> None:
    alert = alert_from_event(
        went_down(), target="https://shop.example/", status_page="https://status.example/"
    )
    assert alert.to_json() == {
        "version": 1,
        "kind": "down",
        "state": "firing",
        "site": "shop",
        "url": "https://shop.example/",
        "summary": "DOWN: shop — HTTP 500",
        "reason": "status",
        "message": "HTTP 500",
        "since": "2027-01-15T08:00:00Z",
        "at": "2027-01-15T08:01:40Z",
        "duration": 100.0,
        "incident_id": "inc1",
        "reminder": 0,
        "status_page": "https://status.example/",
    }
    body = webhook_body(alert)
    assert json.loads(body) == alert.to_json()


def test_reminders_recoveries_and_certificates_have_their_kinds() -> None:
    still = StillDown("shop", "inc1", 100.0, 400.0, "timeout", "", 2, ())
    assert alert_from_event(still, target="x").kind == "still_down"
    assert alert_from_event(still, target="x").reminder == 2
    rec = alert_from_event(Recovered("shop", "inc1", 100.0, 700.0, 701.0, ()), target="x")
    assert (rec.kind, rec.firing, rec.at, rec.since) == ("recovered", False, 700.0, 100.0)
    cert = alert_from_event(CertExpiring("shop", 86400.0 * 30, 0.0), target="x")
    assert cert.kind == "certificate" and cert.firing


def test_flapping_and_stable_have_their_alerts_on_every_channel() -> None:
    # (A FLAPPING once made the whole probe's bookkeeping raise: no alert on any channel, and
    # the probe's metrics and history skipped. Found by the soak.)
    flap = Flapping("shop", 100.0, 400.0, 4, 3600.0, Status.DOWN, ())
    alert = alert_from_event(flap, target="http://shop/")
    assert (alert.kind, alert.firing, alert.incident_id) == ("flapping", True, "flap-100")
    assert alert.summary == "FLAPPING: shop — 4 changes between UP and DOWN within 1h"
    stable = Stable("shop", 100.0, 2200.0, Status.UP, None, 1900.0, ())
    end = alert_from_event(stable, target="http://shop/")
    assert (end.kind, end.firing, end.incident_id) == ("stable", False, "flap-100")
    assert end.summary == "STABLE: shop (now UP)"
    labels = alertmanager_labels(alert)
    assert (
        labels
        == alertmanager_labels(end)
        == {
            "alertname": "SiteFlapping",
            "site": "shop",
            "severity": "warning",
        }
    )
    for a in (alert, end):
        assert json.loads(webhook_body(a))["kind"] == a.kind


@given(st.sampled_from([WentDown, StillDown, Recovered, CertExpiring, Flapping, Stable]), st.data())
def test_every_event_the_monitor_gives_has_an_alert(cls: type[Any], data: st.DataObject) -> None:
    event = data.draw(st.from_type(cls))
    alert = alert_from_event(event, target="http://t/")
    assert decode_alert(encode_alert(alert)) == alert
    assert "\n" not in webhook_body(alert).decode()


@given(
    site=names,
    reason=st.text(max_size=60),
    message=st.text(max_size=300),
    since=times,
    at=times,
)
def test_the_stored_alert_round_trips_and_its_json_is_one_safe_line(
    site: str, reason: str, message: str, since: float, at: float
) -> None:
    event = WentDown(site, "id", since, at, reason, message, ())
    alert = alert_from_event(event, target="http://t/")
    assert decode_alert(encode_alert(alert)) == alert
    text = webhook_body(alert).decode()
    assert "\n" not in text and "\r" not in text
    for field in ("summary", "reason", "message"):
        value = alert.to_json()[field]
        assert not any(ord(c) < 32 for c in value)


@pytest.mark.parametrize("bad", ["", "[]", '{"version": 2}', '{"version": 1}', "nope"])
def test_a_damaged_stored_alert_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_alert(bad)


# ------------------------------------------------------------------ channels' pure parts


def test_alertmanager_alerts_have_only_identity_labels_and_the_incident_times() -> None:
    down = alert_from_event(went_down(), target="x", status_page="https://status.example/")
    [item] = json.loads(alertmanager_body([down], now=1_800_000_200.0, resend_every=60.0))
    assert item["labels"] == {"alertname": "SiteDown", "site": "shop", "severity": "critical"}
    assert item["startsAt"] == "2027-01-15T08:00:00Z"
    assert item["endsAt"] == "2027-01-15T08:07:20Z"  # now + 4 x resend_every
    assert item["generatorURL"] == "https://status.example/"
    rec = alert_from_event(
        Recovered("shop", "inc1", 1_800_000_000.0, 1_800_000_500.0, 0, ()), target="x"
    )
    [item] = json.loads(alertmanager_body([rec], now=1_900_000_000.0, resend_every=60.0))
    assert item["endsAt"] == "2027-01-15T08:08:20Z" and item["startsAt"] == "2027-01-15T08:00:00Z"
    assert alertmanager_labels(rec) == alertmanager_labels(down)


@given(at1=times, at2=times, status=st.none() | st.just("https://s/"))
def test_two_sentinels_send_the_same_labels_for_one_incident(
    at1: float, at2: float, status: str | None
) -> None:
    a = alert_from_event(went_down(at=at1), target="x", status_page=status)
    b = alert_from_event(went_down(at=at2), target="x")
    assert alertmanager_labels(a) == alertmanager_labels(b)


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=500))
def test_the_signature_is_the_hmac_sha256_of_the_body(secret: bytes, body: bytes) -> None:
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, None), (204, None), (400, True), (404, True), (408, False), (429, False), (503, False)],
)
def test_http_answers_are_delivered_permanent_or_transient(
    status: int, outcome: bool | None
) -> None:
    error = verdict("webhook x", status, "no\r\nway")
    if outcome is None:
        assert error is None
    else:
        assert error is not None and error.permanent is outcome
        assert "\n" not in error.detail and f"HTTP {status}" in error.detail


def test_a_late_email_says_so_at_the_top_of_both_bodies() -> None:
    message = build_message(went_down(), email=EMAIL, target="https://shop.example/")
    note = late_note(0.0, 7200.0)
    assert note is not None
    raw = mark_late(message, note).as_bytes()
    again = parse_message(raw)
    assert again["X-Sentinel-Delivered-Late"] == "yes"
    plain = again.get_body(("plain",))
    html_part = again.get_body(("html",))
    assert plain is not None and html_part is not None
    assert plain.get_content().startswith("Delivered late: this alert was raised 2h before")
    assert "Delivered late" in html_part.get_content()
    assert str(again["Subject"]).startswith("[sentinel] DOWN: shop")


def test_a_fallback_email_threads_with_the_incident() -> None:
    alert = alert_from_event(went_down(), target="https://shop.example/")
    msg = build_alert_message(alert, EMAIL)
    root = incident_message_id("shop", "inc1", domain="example.org")
    # Its own Message-ID (the original DOWN email may still arrive after a retry), in the thread.
    assert msg["Message-ID"] != root and msg["In-Reply-To"] == root
    rec = build_alert_message(
        alert_from_event(Recovered("shop", "inc1", 1.0, 2.0, 3.0, ()), target="x"), EMAIL
    )
    assert rec["In-Reply-To"] == incident_message_id("shop", "inc1", domain="example.org")


# ------------------------------------------------------------------ config


def test_channels_and_routing_are_parsed() -> None:
    config = parse_config(
        {
            "sentinel": {"status_url": "https://status.example/"},
            "email": {"from": "s@example.org", "to": ["o@example.org"], "helo_name": "vps.example"},
            "channels": [
                {"name": "phone", "type": "webhook", "url": "https://ntfy.example/a"},
                {"name": "am", "type": "alertmanager", "urls": ["http://127.0.0.1:9093"]},
            ],
            "defaults": {
                "notify": ["email", "phone"],
                "fallback": "phone",
                "escalate_after": "10m",
            },
            "sites": [
                {"name": "a", "url": "http://a.example/"},
                {"name": "b", "url": "http://b.example/", "notify": ["am"], "fallback": "email"},
            ],
        }
    )
    assert [c.name for c in config.channels] == ["phone", "am"]
    assert config.channels[1].resend_every == 60.0
    a, b = config.sites
    assert (a.notify, a.fallback, a.escalate_after) == (("email", "phone"), "phone", 600.0)
    assert (b.notify, b.fallback) == (("am",), "email")
    assert config.email is not None and config.email.helo_name == "vps.example"
    assert config.status_url == "https://status.example/"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            {"channels": [{"name": "x", "type": "pager", "url": "http://a/"}]},
            'channels[0] "x": type: Input should be',
        ),
        (
            {"channels": [{"name": "x", "type": "webhook", "urls": ["http://a/"]}]},
            'channels[0] "x": a webhook needs url',
        ),
        (
            {"channels": [{"name": "x", "type": "webhook", "url": "ftp://a/"}]},
            "invalid URL 'ftp://a/'",
        ),
        (
            {"channels": [{"name": "email", "type": "webhook", "url": "http://a/"}]},
            'channels[0] "email": name: "email" is the [email]',
        ),
        (
            {"channels": [{"name": "x", "type": "webhook", "url": "http://a/", "colour": 1}]},
            'channels[0] "x": colour: unknown key',
        ),
        (
            {"channels": [{"name": "x", "type": "apprise", "urls": []}]},
            'channels[0] "x": urls: at least one URL',
        ),
        (
            {
                "channels": [
                    {"name": "x", "type": "alertmanager", "urls": ["h"], "secret_file": "s"}
                ]
            },
            'channels[0] "x": ',
        ),
        (
            {
                "channels": [
                    {"name": "x", "type": "webhook", "url": "http://a/"},
                    {"name": "x", "type": "webhook", "url": "http://b/"},
                ]
            },
            'channels[1] "x": name: duplicate channel name (also channels[0])',
        ),
        ({"defaults": {"notify": ["pager"]}}, 'defaults: notify: unknown channel "pager"'),
        ({"defaults": {"fallback": "email"}}, 'defaults: fallback: unknown channel "email"'),
        (
            {"sites": [{"name": "s", "url": "http://s/", "notify": ["nope"]}]},
            'sites[0] "s": notify: unknown channel "nope"',
        ),
        ({"defaults": {"escalate_after": "10"}}, "defaults: escalate_after: invalid duration"),
        ({"email": {"from": "a@b", "to": ["c@d"], "helo_name": "bad name"}}, "helo_name"),
        ({"sentinel": {"status_url": "status.example"}}, "sentinel: status_url: invalid URL"),
    ],
)
def test_channel_config_errors_are_one_line_naming_the_place(raw: dict, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert any(error in line for line in info.value.errors), info.value.errors
    assert all("\n" not in line for line in info.value.errors)


def test_apprise_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sentinel.parse.channels as cc

    monkeypatch.setattr(cc, "apprise_installed", lambda: False)
    with pytest.raises(ConfigError) as info:
        parse_config({"channels": [{"name": "chat", "type": "apprise", "urls": ["json://x"]}]})
    assert info.value.errors == [
        "channels[0] \"chat\": type: apprise needs the optional extra: pip install 'sentinel[apprise]'"
    ]


def test_the_example_config_shows_every_channel_option(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "sites.example.toml"
    text = example.read_text()
    for key in (
        "[[channels]]",
        "secret_file",
        "resend_every",
        "notify",
        "fallback",
        "escalate_after",
        "tls_verify",
        "ca_file",
        "helo_name",
        "status_url",
    ):
        assert key in text, key
    load_config(example)


def test_every_toml_example_in_the_channels_doc_is_valid_beside_an_email_section() -> None:
    import re
    import tomllib

    doc = (Path(__file__).resolve().parent.parent / "docs" / "channels.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    assert blocks
    email = '[email]\nfrom = "s@example.org"\nto = ["o@example.org"]\n'
    for block in blocks:
        config = parse_config(tomllib.loads(email + block))
        assert config.channels


def test_aiohttp_and_apprise_are_imported_only_when_such_a_channel_is_configured() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        from sentinel.config import parse_config
        from sentinel.daemon import Daemon
        from sentinel.notify.channels import build_channels
        email = {"from": "s@example.org", "to": ["o@example.org"], "security": "none"}
        config = parse_config({"email": email})
        build_channels(config, {})
        print("aiohttp" in sys.modules, "apprise" in sys.modules)
        hook = {"name": "h", "type": "webhook", "url": "http://127.0.0.1:9/"}
        build_channels(parse_config({"email": email, "channels": [hook]}), {})
        print("aiohttp" in sys.modules, "apprise" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[:2] == ["False False", "True False"]


def test_the_status_page_and_api_show_dead_letters() -> None:
    from sentinel.web import dead_letter_banner, make_routes

    assert dead_letter_banner(0) == ""
    page = dead_letter_banner(2)
    assert "2 alerts were not delivered" in page and "sentinel outbox list" in page
    routes = make_routes(
        render_metrics=lambda: [b""],
        site_status=lambda: [],
        healthy=lambda: True,
        dead_letters=lambda: 1,
    )
    reply = routes["/api/status"]()
    assert reply.chunks is not None  # written in pieces (sentinel.jsonpieces)
    assert json.loads(b"".join(reply.chunks()))["dead_letters"] == 1
    assert "1 alert was not delivered" in dead_letter_banner(1)
