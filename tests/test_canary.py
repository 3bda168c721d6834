"""The network canary's pure part: when the network counts as down, when NETWORK and its
RECOVERED are sent."""

from __future__ import annotations

from sentinel.canary import CANARY_FAILURES, CanaryBoard, canary_interval, canary_site
from sentinel.config import Policy, SiteConfig


def test_the_network_is_down_only_when_every_canary_failed_twice() -> None:
    board = CanaryBoard(("tcp://a:53", "https://b/"))
    for _ in range(CANARY_FAILURES):
        board.record("tcp://a:53", False, "refused", 10.0)
    assert not board.down  # b still answers (or was never probed)
    for _ in range(CANARY_FAILURES):
        board.record("https://b/", False, "timeout", 12.0)
    assert board.down and board.since == 12.0
    board.record("tcp://a:53", True, "ok", 20.0)
    assert not board.down and board.since is None
    assert not CanaryBoard(()).down  # no canary: never down


def test_network_is_sent_when_a_site_fails_too_and_recovered_when_a_canary_answers() -> None:
    board = CanaryBoard(("tcp://a:53",))
    board.record("tcp://a:53", False, "refused", 1.0)
    board.record("tcp://a:53", False, "refused", 2.0)
    assert board.news(3.0, sites_failing=False) is None  # the canary alone: no alarm
    down = board.news(4.0, sites_failing=True)
    assert down is not None and not down.up and down.since == 2.0
    assert down.canaries == (("tcp://a:53", "refused"),)
    assert board.news(5.0, sites_failing=True) is None  # once
    board.record("tcp://a:53", False, "refused", 6.0)
    assert board.news(6.0, sites_failing=True) is None
    board.record("tcp://a:53", True, "ok in 1 ms", 7.0)
    up = board.news(7.0, sites_failing=True)
    assert up is not None and up.up and up.incident_id == down.incident_id
    assert board.news(8.0, sites_failing=True) is None


def test_a_restored_incident_waits_for_a_canary_to_answer() -> None:
    board = CanaryBoard(("tcp://a:53",), incident="net-100")
    assert board.news(200.0, sites_failing=False) is None  # not probed yet
    board.record("tcp://a:53", True, "ok", 201.0)
    up = board.news(201.0, sites_failing=False)
    assert up is not None and up.up and up.since == 100.0


def test_canary_probe_settings() -> None:
    assert canary_site("tcp://9.9.9.9:53", 10.0).target == "9.9.9.9:53"
    site = canary_site("https://example.org/", 4.0)
    assert site.kind == "http" and site.timeout == 2.0
    fast = SiteConfig(name="x", kind="tcp", target="h:1", policy=Policy(retry_interval=2.0))
    assert canary_interval([fast]) == 2.0
    assert canary_interval([]) == 10.0
