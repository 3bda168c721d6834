"""The Prometheus registry: mirrors probe results, site states, mail and config health.

Metrics only mirror; the monitor and the store own the truth. Every per-site series is removed when
the site leaves the config, so the label sets stay bounded by the config, never by time.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from sentinel import __version__
from sentinel.maintenance import MaintenanceClock
from sentinel.monitor import SiteState, Status
from sentinel.probes.result import PHASES, REASONS, ProbeResult
from sentinel.promtext import (
    Counter,
    Family,
    Gauge,
    Histogram,
    ProcessCollector,
    Registry,
    escape_label_value,
    format_value,
)
from sentinel.silences import Silence

PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EMAIL_KINDS = (
    "down",
    "still_down",
    "recovered",
    "certificate",
    "test",
    "creeping",
    "disk",
    "slower",
    "self",
    "steal",
    "oom",
    "resolved",
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

if PHASES != ("dns", "connect", "tls", "processing", "transfer"):  # pragma: no cover
    raise ImportError("Metrics.observe spells the phases out: update it with PHASES")


class _SiteSeries:
    """One site's per-site series, as plain numbers.

    A child object per value (per histogram bucket too, as prometheus_client kept) cost ~15 KiB
    and ~10 locked updates per site and probe. Here a probe is a few attribute stores, and a
    scrape formats these numbers straight into text (see `Metrics.render_chunks`).
    """

    __slots__ = (
        "buckets",
        "count",
        "downtime",
        "fail",
        "failures_in_row",
        "flapping",
        "label",
        "ok",
        "phases",
        "probed",
        "reasons",
        "skipped",
        "state",
        "status_code",
        "success",
        "sum",
        "tls_expiry",
        "up",
    )

    def __init__(self, site: str) -> None:
        self.label = f'site="{_escape(site)}"'
        self.probed = False  # the probe series appear with the first probe
        self.success = 0.0
        # Typed arrays, written in place: a list's counts become an int object each past 256,
        # and a list of phases a new list of floats at every probe (~0.5 KiB a site).
        self.buckets = array("q", bytes(8 * len(PROBE_BUCKETS)))  # non-cumulative; +Inf: count
        self.count = 0
        self.sum = 0.0
        self.phases = array("d", bytes(8 * len(PHASES)))
        self.failures_in_row = 0.0
        self.downtime = 0.0
        self.ok = 0.0
        self.fail = 0.0
        self.status_code = 0.0
        self.reasons: dict[str, float] | None = None  # reason -> failures, in first-seen order
        self.tls_expiry: float | None = None
        self.skipped: float | None = None
        self.up: float | None = None  # absent while the state is UNKNOWN
        self.state = "unknown"  # SiteState.state_name
        self.flapping = 0.0


class Metrics:
    """The registry (process, global and early-warning series, via `sentinel.promtext`) plus
    the per-site series, which this class keeps and formats itself. No `_created` series (they
    would double every counter's series for a value nobody graphs)."""

    def __init__(self, registry: Registry | None = None, *, process: bool = True) -> None:
        self.registry = registry or Registry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.info = Gauge("sentinel_build_info", "sentinel's version", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self.schedule_lag = Histogram(
            "sentinel_schedule_lag_seconds",
            "How late probes start compared to their schedule",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.sites = Gauge("sentinel_sites", "Sites in the configuration", registry=r)
        self.emails_sent = Counter(
            "sentinel_emails_sent", "Emails delivered, by kind", ["kind"], registry=r
        )
        self.email_failures = Counter(
            "sentinel_email_failures", "Failed email delivery attempts", registry=r
        )
        self.outbox_pending = Gauge(
            "sentinel_outbox_pending", "Emails waiting to be (re)sent", registry=r
        )
        self.outbox_dropped = Counter(
            "sentinel_outbox_dropped",
            "Emails dropped because the outbox was full",
            registry=r,
        )
        self.store_errors = Counter(
            "sentinel_store_errors", "Failed writes to the state store", registry=r
        )
        self.internal_errors = Counter(
            "sentinel_internal_errors",
            "Probes whose result could not be taken or recorded because of a bug in sentinel",
            registry=r,
        )
        self.reload_ok = Gauge(
            "sentinel_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded",
            registry=r,
        )
        self.reload_time = Gauge(
            "sentinel_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration (re)load",
            registry=r,
        )
        self.deadman_pings = Counter(
            "sentinel_deadman_pings",
            "Pings to the [deadman] switch, by result: ok, fail (alerts undeliverable), "
            "error (the ping itself failed), withheld (the scheduler made no progress)",
            ["result"],
            registry=r,
        )
        for kind in EMAIL_KINDS:
            self.emails_sent.labels(kind)
        self._sites: dict[str, _SiteSeries] = {}

    # ------------------------------------------------------------------ per site

    def _site(self, site: str) -> _SiteSeries:
        series = self._sites.get(site)
        if series is None:
            series = self._sites[site] = _SiteSeries(site)
        return series

    def add_site(self, state: SiteState) -> None:
        """Show a restored UP/DOWN state before the first probe. Probe series appear with the first
        probe: a 0 before then would read as a failure."""
        self.set_state(state)

    def set_state(self, state: SiteState) -> None:
        series = self._site(state.site)
        # sentinel_site_up stays absent while the state is UNKNOWN (neither up nor down yet).
        if state.status is Status.DOWN:
            series.up = 0.0
        elif state.status is Status.UP:
            series.up = 1.0
        series.failures_in_row = float(state.consecutive_failures)
        series.state = state.state_name
        series.flapping = 1.0 if state.flapping else 0.0

    def observe(self, site: str, result: ProbeResult, state: SiteState, downtime: float) -> None:
        s = self._site(site)
        s.probed = True
        s.success = 1.0 if result.ok else 0.0
        total = result.total
        bucket = bisect_left(PROBE_BUCKETS, total)  # the first bound >= total ("le")
        if bucket < len(PROBE_BUCKETS):
            s.buckets[bucket] += 1
        s.count += 1
        s.sum += total
        # PHASES spelled out (every probe: five getattr calls by name cost more than the rest).
        r, phases = result, s.phases
        phases[0] = 0.0 if r.dns is None else r.dns
        phases[1] = 0.0 if r.connect is None else r.connect
        phases[2] = 0.0 if r.tls is None else r.tls
        phases[3] = 0.0 if r.processing is None else r.processing
        phases[4] = 0.0 if r.transfer is None else r.transfer
        s.status_code = float(result.status)
        if result.ok:
            s.ok += 1
        else:
            s.fail += 1
            reason = result.reason if result.reason in REASONS else "error"
            if s.reasons is None:
                s.reasons = {}
            s.reasons[reason] = s.reasons.get(reason, 0.0) + 1
        if result.tls_expiry is not None:
            s.tls_expiry = result.tls_expiry
        if downtime > 0:
            s.downtime += downtime
        self.set_state(state)

    def skipped(self, site: str, count: int = 1) -> None:
        """Scheduled probes of `site` skipped (the previous one was still running)."""
        series = self._site(site)
        series.skipped = (series.skipped or 0.0) + count

    def watch_maintenance(self, clock: Callable[[], MaintenanceClock]) -> None:
        """`sentinel_maintenance_active{maintenance}`, evaluated at each scrape."""
        self.registry.register(_MaintenanceCollector(clock))

    def watch_silences(self, silences: Callable[[], Sequence[Silence]]) -> None:
        """`sentinel_silences_active`, evaluated at each scrape."""
        self.registry.register(_SilenceCollector(silences))

    def remove_site(self, site: str) -> None:
        """Drop every series of a site (it left the config)."""
        self._sites.pop(site, None)

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        return b"".join(self.render_chunks())

    def render_chunks(self, sites_per_chunk: int = 500) -> Iterator[bytes]:
        """The exposition text in pieces of at most `sites_per_chunk` sites of one family, so a
        server can hand the event loop back between pieces (and never holds all of it twice)."""
        yield self.registry.render()
        sites = list(self._sites.values())
        probed = [s for s in sites if s.probed]
        for family in _FAMILIES:
            members = probed if family.probed_only else sites
            yield family.header
            for start in range(0, len(members), sites_per_chunk):
                lines: list[str] = []
                for s in members[start : start + sites_per_chunk]:
                    family.lines(s, lines)
                yield "".join(lines).encode()


class _MaintenanceCollector:
    def __init__(self, clock: Callable[[], MaintenanceClock]) -> None:
        self._clock = clock

    def collect(self) -> Iterator[Family]:
        family = Family(
            "sentinel_maintenance_active",
            "gauge",
            "1 while the maintenance window is on (alerts of its sites are held)",
            ("maintenance",),
        )
        for window, state in self._clock().states(time.time()):
            family.add([window.name], 1.0 if state.active else 0.0)
        yield family


class _SilenceCollector:
    def __init__(self, silences: Callable[[], Sequence[Silence]]) -> None:
        self._silences = silences

    def collect(self) -> Iterator[Family]:
        now = time.time()
        active = sum(1 for s in self._silences() if s.until > now)
        family = Family(
            "sentinel_silences_active", "gauge", "Silences in force (sentinel silence --list)"
        )
        family.add([], float(active))
        yield family


# ---------------------------------------------------------------------- the per-site families


_escape = escape_label_value
format_sample = format_value  # the name tests and benches import
_num = format_value  # the short name the many render lines below use


def _success(s: _SiteSeries, out: list[str]) -> None:
    out.append(f"sentinel_probe_success{{{s.label}}} {_num(s.success)}\n")


_LE = [f'le="{_num(b)}",' for b in PROBE_BUCKETS]


def _duration(s: _SiteSeries, out: list[str]) -> None:
    name, label = "sentinel_probe_duration_seconds", s.label
    running = 0
    for le, n in zip(_LE, s.buckets, strict=True):
        running += n
        out.append(f"{name}_bucket{{{le}{label}}} {_num(running)}\n")
    count = _num(s.count)
    out.append(f'{name}_bucket{{le="+Inf",{label}}} {count}\n')
    out.append(f"{name}_count{{{label}}} {count}\n{name}_sum{{{label}}} {_num(s.sum)}\n")


_PHASE_LABELS = [f'phase="{p}",' for p in PHASES]


def _phases(s: _SiteSeries, out: list[str]) -> None:
    for phase, value in zip(_PHASE_LABELS, s.phases, strict=True):
        out.append(f"sentinel_probe_phase_seconds{{{phase}{s.label}}} {_num(value)}\n")


def _up(s: _SiteSeries, out: list[str]) -> None:
    if s.up is not None:
        out.append(f"sentinel_site_up{{{s.label}}} {_num(s.up)}\n")


SITE_STATES = ("unknown", "up", "pending", "down")
_STATE_LABELS = [(name, f'state="{name}",') for name in SITE_STATES]


def _state(s: _SiteSeries, out: list[str]) -> None:
    for name, label in _STATE_LABELS:
        value = "1.0" if s.state == name else "0.0"
        out.append(f"sentinel_site_state{{{label}{s.label}}} {value}\n")


def _flapping(s: _SiteSeries, out: list[str]) -> None:
    out.append(f"sentinel_site_flapping{{{s.label}}} {_num(s.flapping)}\n")


def _in_row(s: _SiteSeries, out: list[str]) -> None:
    out.append(f"sentinel_consecutive_failures{{{s.label}}} {_num(s.failures_in_row)}\n")


def _downtime(s: _SiteSeries, out: list[str]) -> None:
    out.append(f"sentinel_downtime_seconds_total{{{s.label}}} {_num(s.downtime)}\n")


def _probes(s: _SiteSeries, out: list[str]) -> None:
    out.append(f'sentinel_probes_total{{result="success",{s.label}}} {_num(s.ok)}\n')
    out.append(f'sentinel_probes_total{{result="failure",{s.label}}} {_num(s.fail)}\n')


def _failures(s: _SiteSeries, out: list[str]) -> None:
    if s.reasons:
        for reason, n in s.reasons.items():
            out.append(f'sentinel_probe_failures_total{{reason="{reason}",{s.label}}} {_num(n)}\n')


def _status_code(s: _SiteSeries, out: list[str]) -> None:
    out.append(f"sentinel_http_status_code{{{s.label}}} {_num(s.status_code)}\n")


def _tls_expiry(s: _SiteSeries, out: list[str]) -> None:
    if s.tls_expiry is not None:
        name = "sentinel_tls_cert_expiry_timestamp_seconds"
        out.append(f"{name}{{{s.label}}} {_num(s.tls_expiry)}\n")


def _skipped(s: _SiteSeries, out: list[str]) -> None:
    if s.skipped is not None:
        out.append(f"sentinel_skipped_ticks_total{{{s.label}}} {_num(s.skipped)}\n")


@dataclass(frozen=True, slots=True)
class _Family:
    header: bytes
    lines: Callable[[_SiteSeries, list[str]], None]
    probed_only: bool  # only sites probed at least once (else: every site with a state)


def _family(
    name: str,
    kind: str,
    help_text: str,
    lines: Callable[[_SiteSeries, list[str]], None],
    *,
    probed_only: bool = True,
) -> _Family:
    header = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()
    return _Family(header, lines, probed_only)


# Names, help texts and order as prometheus_client wrote them (dashboards and rules depend on
# the names; tests/test_metrics.py pins the text).
_FAMILIES: Final = (
    _family("sentinel_probe_success", "gauge", "1 if the last probe passed, else 0", _success),
    _family(
        "sentinel_probe_duration_seconds",
        "histogram",
        "Total probe time, connect to last byte",
        _duration,
    ),
    _family(
        "sentinel_probe_phase_seconds",
        "gauge",
        "The last probe's time per phase (dns, connect, tls, processing, transfer)",
        _phases,
    ),
    _family(
        "sentinel_site_up",
        "gauge",
        "Alert state after thresholds: 1 up, 0 down",
        _up,
        probed_only=False,
    ),
    _family(
        "sentinel_site_state",
        "gauge",
        "1 for the site's state (unknown, up, pending: failing but not yet DOWN, down), else 0",
        _state,
        probed_only=False,
    ),
    _family(
        "sentinel_site_flapping",
        "gauge",
        "1 while the site is FLAPPING (its DOWN/RECOVERED alerts are held)",
        _flapping,
        probed_only=False,
    ),
    _family("sentinel_consecutive_failures", "gauge", "Failed probes in a row", _in_row),
    _family("sentinel_downtime_seconds_total", "counter", "Time spent DOWN", _downtime),
    _family("sentinel_probes_total", "counter", "Probes by result", _probes),
    _family(
        "sentinel_probe_failures_total",
        "counter",
        "Failed probes by reason (timeout, connect_refused, dns, tls, status, body, slow, ...)",
        _failures,
    ),
    _family("sentinel_http_status_code", "gauge", "The last HTTP status (0 if none)", _status_code),
    _family(
        "sentinel_tls_cert_expiry_timestamp_seconds",
        "gauge",
        "Expiry (NotAfter) of the served certificate, seconds since the epoch",
        _tls_expiry,
    ),
    _family(
        "sentinel_skipped_ticks_total",
        "counter",
        "Scheduled probes skipped because the previous probe of the site was still running",
        _skipped,
        probed_only=False,
    ),
)
