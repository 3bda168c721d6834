"""What a DOWN email says beyond "it failed": which layer failed (DNS, connect, TLS, the
application's answer), each phase against the site's own normal, and, for a site that runs on this
host, what happened to the services it depends on. Pure: values in, lines of text out.

    connect 2 ms, as usual
    no answer within 10 s; the application usually answers in 40 ms
    blog-app was OOM-killed 3 times in the last hour; its memory grew 48 MiB/day for 9 days
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from sentinel.early.facts import HostFacts, WatchFacts
from sentinel.early.messages import format_bytes, format_rate
from sentinel.median import median
from sentinel.notify.wording import fmt_latency
from sentinel.sanitize import one_line

__all__ = ["Diagnosis", "Normal", "PhaseNormals", "Phases", "diagnose", "local_lines"]

PHASE_NAMES = ("dns", "connect", "tls", "processing")
_NAMES = {"dns": "DNS", "connect": "connect", "tls": "TLS handshake", "processing": "answer"}
_WITHIN_RE = re.compile(r"within (\d+(?:\.\d+)?)s\b")
# A phase is "as usual" up to twice its normal time or 20 ms above it (small times jitter).
_USUAL_RATIO = 2.0
_USUAL_SLACK = 0.020
_MIN_GROWTH = 1024 * 1024 / 86400  # 1 MiB/day: below this a memory trend is not news
_DISK_NEWS = 0.90  # a disk this full is worth a line
_STEAL_NEWS = 0.05  # 5 % steal is worth a line


@dataclass(frozen=True, slots=True)
class Phases:
    """One probe's phase times, seconds; None for a phase that did not happen (or not yet)."""

    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    processing: float | None = None
    total: float | None = None

    def get(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value if value is not None and math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class Normal:
    """A site's normal: the median phase times of its recent good probes (`samples` of them),
    and its multi-day median total time from the latency-drift baseline when there is one."""

    phases: Phases
    samples: int
    baseline: float | None = None
    baseline_span: float = 0.0


@dataclass(frozen=True, slots=True)
class Diagnosis:
    summary: str  # one sentence for the top of the email ("" when nothing stands out)
    lines: tuple[str, ...]  # "what sentinel knows" about the probe
    local: tuple[str, ...]  # the services the site depends on and the host


# A probe's five times (dns, connect, tls, processing, total) as half-precision floats: 11
# significant bits, 0.05 % of the value (0.02 ms of "usually 40 ms"), up to 65,504 s.
_RING_ROW = struct.Struct("<5e")
_HALF_MAX = 65504.0


class PhaseNormals:
    """The phase times of a site's last `size` good probes, in a ring of half-precision floats
    (fixed memory: `size` x 5 x 2 bytes a site, half of 32-bit floats: ~0.15 MiB at 1,000
    sites). Not thread-safe; one owner."""

    __slots__ = ("_count", "_ring", "size")

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._ring = bytearray(_RING_ROW.size * size)  # (rows are read only once written)
        self._count = 0

    def add(self, phases: Phases) -> None:
        self.add_times(phases.dns, phases.connect, phases.tls, phases.processing, phases.total)

    def add_times(
        self,
        dns: float | None,
        connect: float | None,
        tls: float | None,
        processing: float | None,
        total: float | None,
    ) -> None:
        """One good probe's times (the hot path: every good probe of every site comes here)."""
        nan = math.nan
        times = (
            nan if dns is None else dns,
            nan if connect is None else connect,
            nan if tls is None else tls,
            nan if processing is None else processing,
            nan if total is None else total,
        )
        at = (self._count % self.size) * _RING_ROW.size
        try:
            _RING_ROW.pack_into(self._ring, at, *times)
        except OverflowError:  # (over 18 hours: kept as the largest time a row holds)
            big = [_HALF_MAX if math.isfinite(t) and t > _HALF_MAX else t for t in times]
            _RING_ROW.pack_into(self._ring, at, *big)
        self._count += 1

    def normal(self) -> Normal | None:
        n = min(self._count, self.size)
        if n == 0:
            return None
        rows = list(_RING_ROW.iter_unpack(memoryview(self._ring)[: n * _RING_ROW.size]))
        medians: dict[str, float | None] = {}
        for offset, name in enumerate((*PHASE_NAMES, "total")):
            values = [row[offset] for row in rows]
            values = [v for v in values if math.isfinite(v) and v >= 0]
            # (rounded to the microsecond; the ring keeps each time to 0.05 %)
            medians[name] = round(float(median(values)), 6) if values else None
        return Normal(Phases(**medians), samples=n)


# ---------------------------------------------------------------- the probe


def _layer(reason: str, message: str, kind: str) -> str:
    """Which layer failed: dns, connect, tls, processing (the application's answer) or check."""
    low = message.lower()
    if reason == "dns":
        return "dns"
    if reason in ("connect", "connect_refused", "connect_reset"):
        return "connect"
    if reason == "tls":
        return "tls"
    if reason == "timeout":
        if low.startswith("cannot resolve"):
            return "dns"
        if low.startswith("no connection"):
            return "connect"
        if low.startswith("no tls"):
            return "tls"
        return "processing" if kind == "http" else "connect"
    if reason == "error":
        return "check"
    return "processing"


_LAYER_WORDS = {
    "dns": "DNS: the name did not resolve",
    "connect": "connect: no TCP connection",
    "tls": "TLS: the secure connection was not set up",
    "processing": "the application's answer",
    "check": "sentinel's check itself (not the site)",
}


def _usual(value: float, usual: float | None) -> str:
    if usual is None:
        return ""
    if value <= max(usual * _USUAL_RATIO, usual + _USUAL_SLACK):
        return ", as usual"
    return f", usually {fmt_latency(usual)}: slower than normal"


def _seconds_text(message: str) -> str:
    match = _WITHIN_RE.search(message)
    return f" within {match.group(1)} s" if match else ""


def diagnose(
    *,
    reason: str,
    message: str,
    kind: str,
    phases: Phases | None,
    normal: Normal | None,
    status: int = 0,
    watches: Sequence[WatchFacts] = (),
    host: HostFacts | None = None,
) -> Diagnosis:
    """The diagnosis of a failed probe (`reason`, `message`, its `phases`) against the site's
    `normal`, plus the local facts. `kind` is the probe kind ("http", "tcp")."""
    message = one_line(message, 300)
    layer = _layer(reason, message, kind)
    lines: list[str] = []
    worked = []
    p = phases or Phases()
    usual = normal.phases if normal is not None else Phases()
    order = [name for name in PHASE_NAMES if name != "processing" or kind == "http"]
    failed_index = order.index(layer) if layer in order else len(order)
    for name in order[:failed_index]:
        value = p.get(name)
        if value is None:
            continue  # (no DNS for an IP address, no TLS for plain HTTP)
        worked.append(_NAMES[name])
        lines.append(f"{_NAMES[name]} {fmt_latency(value)}{_usual(value, usual.get(name))}")
    where = f"Failed at {_LAYER_WORDS[layer]}"
    if worked:
        shown = ", ".join(worked[:-1]) + " and " + worked[-1] if len(worked) > 1 else worked[0]
        where += f" ({shown} worked)"
    lines.insert(0, where)

    usual_at_layer = usual.get(layer) if layer in PHASE_NAMES else None
    usually = f"; usually {fmt_latency(usual_at_layer)}" if usual_at_layer is not None else ""
    if reason == "timeout":
        what = {"dns": "no DNS answer", "connect": "no connection", "tls": "no TLS handshake"}
        text = what.get(layer, "no answer")
        if layer == "processing" and usual_at_layer is not None:
            usually = f"; the application usually answers in {fmt_latency(usual_at_layer)}"
        lines.append(f"{text}{_seconds_text(message)}{usually}")
    elif layer == "processing":
        answered = p.get("processing")
        code = f"HTTP {status}" if 100 <= status <= 999 else "an answer"
        if answered is not None and reason in ("status", "body", "body_too_large", "slow"):
            lines.append(f"answered {code} in {fmt_latency(answered)}{usually}")
        if message:
            lines.append(message)
    elif message:
        lines.append(f"{message}{usually}" if layer in ("dns", "connect", "tls") else message)
    if normal is not None and usual.get("total") is not None:
        total = usual.get("total")
        text = f"normally the whole check takes {fmt_latency(total)}"
        text += f" (median of its last {normal.samples} good probes"
        if normal.baseline is not None:
            days = normal.baseline_span / 86400
            span = f"{days:.0f} days" if days >= 1 else f"{normal.baseline_span / 3600:.0f} h"
            text += f"; {fmt_latency(normal.baseline)} over {span}"
        lines.append(text + ")")

    local = local_lines(watches, host)
    return Diagnosis(summary=_summary(watches), lines=tuple(lines), local=tuple(local))


# ---------------------------------------------------------------- this host


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 3600:
        return "1 hour"
    return f"{max(1.0, seconds / 60):.0f} minutes"


def _last(span: float) -> str:
    text = _span(span)
    return "the last hour" if text == "1 hour" else f"the last {text}"


def _growth(w: WatchFacts) -> str:
    """'its memory grew 48 MiB/day for 9 days', or '' when it is not growing."""
    rate = w.growth_per_s
    if rate is None or not math.isfinite(rate) or rate < _MIN_GROWTH or w.growth_over <= 0:
        return ""
    per_day = format_rate(rate).lstrip("+")
    return f"its memory grew {per_day} for {_span(w.growth_over)}"


def _summary(watches: Sequence[WatchFacts]) -> str:
    parts: list[str] = []
    for w in watches:
        name = one_line(w.name, 100)
        facts = []
        if w.oom_kills:
            facts.append(f"was OOM-killed {_times(w.oom_kills)}")
        if w.restarts:
            facts.append(f"restarted {_times(w.restarts)}")
        growth = _growth(w)
        if facts:
            text = f"{name} {' and '.join(facts)} in {_last(w.span)}"
            parts.append(text + (f"; {growth}" if growth else ""))
        elif growth and w.limit is not None and w.memory is not None:
            parts.append(f"{name}: {growth}")
    return ("; ".join(parts) + ".") if parts else ""


def local_lines(watches: Sequence[WatchFacts], host: HostFacts | None) -> list[str]:
    """One or two lines per watched service, then the host's CPU steal and full disks."""
    lines: list[str] = []
    for w in watches:
        name = one_line(w.name, 100)
        who = f"{name} ({one_line(w.source, 200)})" if w.source else name
        if w.error:
            lines.append(f"{who}: cannot be read ({one_line(w.error, 200)})")
            continue
        events = [
            f"OOM-killed {_times(w.oom_kills)}" if w.oom_kills else "no OOM kill",
            f"restarted {_times(w.restarts)}" if w.restarts else "no restart",
        ]
        lines.append(f"{who}: {' and '.join(events)} in {_last(w.span)}")
        if w.memory is not None:
            memory = f"{name} memory {format_bytes(w.memory)}"
            if w.limit is not None and w.limit > 0:
                share = w.memory / w.limit * 100
                memory += f" of {format_bytes(w.limit)} ({w.limit_source or 'limit'}, {share:.0f}%)"
            growth = _growth(w)
            lines.append(f"{memory}; {growth}" if growth else f"{memory}; not growing")
    if host is not None:
        if host.steal is not None:
            note = ": the hypervisor is taking CPU time" if host.steal >= _STEAL_NEWS else ""
            lines.append(f"CPU steal {host.steal * 100:.0f}%{note}")
        for disk in host.disks:
            if disk.size <= 0:
                continue
            share = disk.used / disk.size
            free = format_bytes(max(0.0, disk.size - disk.used))
            note = ": nearly full" if share >= _DISK_NEWS else ""
            lines.append(
                f"disk {one_line(disk.mount, 200)}: {free} free of "
                f"{format_bytes(disk.size)} ({share * 100:.0f}% used){note}"
            )
    return lines
