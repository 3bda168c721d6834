"""The heartbeats' Prometheus series, named like the sites' ones with a `heartbeat` label.

Mirrors only: the service owns the states. A heartbeat's series go when it leaves the config,
and rejected pings are counted without a name label, so no request can add a series.
"""

from __future__ import annotations

import contextlib

from sentinel.heartbeats.state import STATUSES, HeartbeatState
from sentinel.promtext import Counter, Gauge, Registry

REJECT_REASONS = ("unauthorized", "rate_limited", "bad_request", "too_large")
PING_KINDS = ("start", "success", "fail")


class HeartbeatMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.count = Gauge("sentinel_heartbeats", "Heartbeats in the configuration", registry=r)
        self.up = Gauge(
            "sentinel_heartbeat_up",
            "1 if the heartbeat pinged in time and its last run succeeded, 0 if late or failed "
            "(absent until the first ping or alert)",
            ["heartbeat"],
            registry=r,
        )
        self.state = Gauge(
            "sentinel_heartbeat_state",
            "1 for the heartbeat's current state (new, up, running, late, failed)",
            ["heartbeat", "state"],
            registry=r,
        )
        self.last_ping = Gauge(
            "sentinel_heartbeat_last_ping_timestamp_seconds",
            "Time of the last ping (any kind), seconds since the epoch",
            ["heartbeat"],
            registry=r,
        )
        self.last_duration = Gauge(
            "sentinel_heartbeat_last_duration_seconds",
            "Run time of the last run that sent a start and an end ping",
            ["heartbeat"],
            registry=r,
        )
        self.pings = Counter(
            "sentinel_heartbeat_pings",
            "Accepted pings by kind (start, success, fail)",
            ["heartbeat", "kind"],
            registry=r,
        )
        self.rejected = Counter(
            "sentinel_heartbeat_pings_rejected",
            "Refused ping requests by reason (unauthorized, rate_limited, bad_request, too_large)",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)

    def set_state(self, state: HeartbeatState) -> None:
        name = state.name
        status = state.status
        for value in STATUSES:
            self.state.labels(name, value).set(1.0 if value == status else 0.0)
        if status in ("late", "failed"):
            self.up.labels(name).set(0.0)
        elif status != "new":
            self.up.labels(name).set(1.0)
        if state.last_ping is not None:
            self.last_ping.labels(name).set(state.last_ping)
        if state.last_duration is not None:
            self.last_duration.labels(name).set(state.last_duration)
        else:
            with contextlib.suppress(KeyError):
                self.last_duration.remove(name)
        for kind in PING_KINDS:
            self.pings.labels(name, kind)

    def remove(self, name: str) -> None:
        for gauge in (self.up, self.last_ping, self.last_duration):
            with contextlib.suppress(KeyError):
                gauge.remove(name)
        for value in STATUSES:
            with contextlib.suppress(KeyError):
                self.state.remove(name, value)
        for kind in PING_KINDS:
            with contextlib.suppress(KeyError):
                self.pings.remove(name, kind)
