"""Early-warning emails: events in, ready-to-send `EmailMessage`s out. Pure: no clock, no I/O.

Owns the subjects promised in PRODUCT.md (CREEPING, DISK, SLOWER, RESOLVED) plus OOM, STEAL and
SELF, plain-text bodies that state the numbers behind each verdict and what to do, and the
threading: a RESOLVED email replies to its warning, whose Message-ID derives from the trend id.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage

from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded, TrendStarted
from sentinel.notify.mime import attach_bodies, base_message, message_domain
from sentinel.notify.wording import fmt_time
from sentinel.sanitize import one_line

__all__ = [
    "build_early_message",
    "early_message_id",
    "early_message_kind",
    "early_subject",
    "format_approx",
    "format_bytes",
    "format_latency",
    "format_rate",
]

PREFIX = "[sentinel]"
_MAX_NAME = 100
_MAX_TS = 253402300799.0
_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_LIMIT_NAMES = {
    "memory.max": "its {} limit",
    "memory.high": "its {} limit",
    "limit": "its {} limit",
    "MemTotal": "the host's {} of RAM",
}


# ---------------------------------------------------------------- formatting


def _finite(value: float | None, default: float = 0.0) -> float:
    return value if value is not None and math.isfinite(value) else default


def _number(value: float) -> str:
    """3 significant-ish digits: 612, 48, 9.8, 1.5, 1."""
    if value >= 10:
        return f"{value:.0f}"
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def format_bytes(n: float) -> str:
    """1073741824 -> '1 GiB'; 50331648 -> '48 MiB'; 1610612736 -> '1.5 GiB'."""
    n = max(0.0, _finite(n))
    for name, size in _UNITS:
        if n >= size:
            return f"{_number(n / size)} {name}"
    return f"{n:.0f} B"


def format_rate(rate_per_s: float) -> str:
    """Bytes per second -> '+48 MiB/day'."""
    per_day = _finite(rate_per_s) * 86400
    sign = "+" if per_day >= 0 else "-"
    return f"{sign}{format_bytes(abs(per_day))}/day"


def format_approx(seconds: float | None) -> str:
    """'3 days', '5 hours', '40 minutes', '12 seconds' (rounded, for '~<time>')."""
    s = max(0.0, _finite(seconds))
    for name, size, until in (
        ("second", 1.0, 90.0),
        ("minute", 60.0, 90 * 60.0),
        ("hour", 3600.0, 48 * 3600.0),
    ):
        if s < until:
            amount = round(s / size)
            return f"{amount} {name}{'' if amount == 1 else 's'}"
    days = round(min(s, 1e12) / 86400)
    return f"{days} day{'' if days == 1 else 's'}"


def format_latency(seconds: float | None) -> str:
    """0.82 -> '820 ms'; 2.5 -> '2.50 s'; 12.3 -> '12.3 s'."""
    s = max(0.0, _finite(seconds))
    if s < 1:
        return f"{round(s * 1000)} ms"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def _pct(ratio: float | None) -> str:
    return f"{_finite(ratio) * 100:.0f}%"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(min(max(_finite(ts), 0.0), _MAX_TS), tz=UTC)


def _when(ts: float, tz: tzinfo | None = None) -> str:
    """'2026-11-26 23:10:05 UTC', or in `tz` with its offset (sentinel.notify.wording)."""
    return fmt_time(ts, tz)


def _span(seconds: float) -> str:
    """A duration for evidence lines: '24h', '8h 30m', '7d', '6.4s'."""
    s = max(0.0, _finite(seconds))
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    total = round(s)
    parts: list[str] = []
    units = (("h", 3600), ("m", 60), ("s", 1)) if total < 48 * 3600 else (("d", 86400), ("h", 3600))
    for unit, size in units:
        if total >= size:
            amount, total = divmod(total, size)
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])


# ---------------------------------------------------------------- subjects


def _limit_phrase(event: TrendStarted) -> str:
    template = _LIMIT_NAMES.get(event.limit_source, "its {} limit")
    return template.format(format_bytes(_finite(event.limit)))


def _warning_subject(event: TrendStarted) -> str:
    """The subject without the '[sentinel] ' prefix (RESOLVED quotes it)."""
    name = one_line(event.subject, _MAX_NAME) or "?"
    if event.kind == "creeping":
        text = f"CREEPING: {name} memory {format_rate(event.rate_per_s)}"
        if event.limit is not None and event.seconds_to_limit is not None:
            text += f", reaches {_limit_phrase(event)} in ~{format_approx(event.seconds_to_limit)}"
        return text
    if event.kind == "self":
        return (
            f"SELF: sentinel's own memory {format_rate(event.rate_per_s)} "
            f"(now {format_bytes(event.level)})"
        )
    if event.kind == "disk":
        return f"DISK: {name} fills in ~{format_approx(event.seconds_to_limit)}"
    if event.kind == "slower":
        return (
            f"SLOWER: {name} median {format_latency(event.level)} vs "
            f"{format_latency(event.usual)} usual"
        )
    return f"STEAL: CPU steal {_pct(event.level)} (warning at {_pct(event.limit)})"


def _oom_subject(event: OomEvent) -> str:
    name = one_line(event.watch, _MAX_NAME) or "?"
    if event.oom_kills > 0:
        what = "process" if event.oom_kills == 1 else "processes"
        return f"OOM: {name} — {event.oom_kills} {what} killed by the out-of-memory killer"
    limit = f" ({format_bytes(event.limit)})" if event.limit is not None else ""
    times = "time" if event.high_events == 1 else "times"
    return f"OOM: {name} hit memory.high{limit}, throttled {event.high_events} {times}"


def early_subject(event: EarlyEvent) -> str:
    if isinstance(event, TrendStarted):
        return f"{PREFIX} {_warning_subject(event)}"
    if isinstance(event, TrendEnded):
        return f"{PREFIX} RESOLVED: {_warning_subject(event.warning)}"
    return f"{PREFIX} {_oom_subject(event)}"


def early_message_kind(event: EarlyEvent) -> str:
    """The `kind` label for sentinel_emails_sent_total: creeping, disk, slower, self, steal, oom,
    resolved."""
    if isinstance(event, TrendEnded):
        return "resolved"
    if isinstance(event, OomEvent):
        return "oom"
    return event.kind


def _token(trend_id: str) -> str:
    return hashlib.sha256(trend_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def early_message_id(event: EarlyEvent, *, domain: str) -> tuple[str, str | None]:
    """(Message-ID, the Message-ID it replies to or None). Derived from the event's id alone, so a
    retry or a restart produces the same ids."""
    if isinstance(event, OomEvent):
        return f"<early.oom.{_token(event.event_id)}@{domain}>", None
    warning = event.warning if isinstance(event, TrendEnded) else event
    root = f"<early.{warning.kind}.{_token(warning.trend_id)}@{domain}>"
    if isinstance(event, TrendEnded):
        return f"<early.{warning.kind}.{_token(warning.trend_id)}.resolved@{domain}>", root
    return root, None


# ---------------------------------------------------------------- bodies

_WHAT_TO_DO = {
    "creeping": [
        "What to do: look at what grows. The usual suspects are caches without expiry (entries",
        "inserted but never purged), maps keyed by request data, queues nobody drains, lists of",
        "sessions or connections that are never trimmed, and lazily built values that are never",
        "forced. A heap profile over a few hours shows the type that grows. Restarting the service",
        "buys time but does not fix a leak: sentinel sends RESOLVED when the trend ends and warns",
        "again if it comes back.",
    ],
    "self": [
        "This is a bug in sentinel: its own memory should stay flat. Please report it with the",
        "output of /metrics attached. Restarting sentinel (systemctl restart sentinel) resets it.",
    ],
    "disk": [
        "What to do: look at what writes. Logs without rotation or size limits (journald:",
        "SystemMaxUse=), caches and temporary files, old backups and build artifacts, a database",
        "that grows with its data. `du -xh --max-depth=2 <mount> | sort -h | tail` shows where the",
        "space goes.",
    ],
    "slower": [
        "What to do: see where the time goes. sentinel_probe_phase_seconds splits each probe into",
        "dns, connect, tls, processing and transfer. Growing processing time points at the server:",
        "queries over data that keeps growing, memory pressure or swapping (a leak makes garbage",
        "collection busy), or CPU credits running out (see sentinel_host_cpu_steal_ratio).",
    ],
    "steal": [
        "The hypervisor is giving this machine's CPU time to others. On credit-based cloud",
        "instances (burstable types) steal rises when the CPU credits run out: the machine slows",
        "to its baseline and its sites start timing out. Check the credit balance, and what uses",
        "the CPU (a memory leak can keep the garbage collector busy), or move to a larger size.",
    ],
    "oom": [
        "What to do: `journalctl -u <unit>` and `systemctl status <unit>` show what was killed and",
        "when. If the service's memory creeps up, look for a leak (sentinel warns with CREEPING",
        "when it sees one); if the workload legitimately grew, raise MemoryHigh=/MemoryMax=.",
    ],
}


def _fields(fields: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in fields) + 2
    return [f"{name + ':':<{width}}{value}" for name, value in fields]


def _evidence(event: TrendStarted) -> str:
    return (
        f"{event.samples} samples in {event.buckets} buckets covering {_span(event.covered)} "
        f"of a {_span(event.window)} window"
    )


def _started_body(event: TrendStarted, tz: tzinfo | None) -> list[str]:
    name = one_line(event.subject, 500) or "?"
    since = _when(event.since, tz)
    if event.evaluations > 1:
        since += f" (confirmed on {event.evaluations} evaluations in a row)"
    if event.kind in ("creeping", "self"):
        who = f"{name} ({one_line(event.source, 500)})" if event.source else name
        limit = (
            f"{format_bytes(_finite(event.limit))} ({event.limit_source or 'limit'})"
            if event.limit is not None
            else "unknown"
        )
        left = (
            f"~{format_approx(event.seconds_to_limit)} "
            f"(around {_when(event.at + _finite(event.seconds_to_limit), tz)})"
            if event.seconds_to_limit is not None
            else "no forecast"
        )
        if event.kind == "creeping":
            headline = (
                f"The memory of {name} is rising steadily: {format_rate(event.rate_per_s)}. "
                f"At this rate it reaches {_limit_phrase(event)} in "
                f"~{format_approx(event.seconds_to_limit)}."
            )
        else:
            headline = f"sentinel's own memory is rising steadily: {format_rate(event.rate_per_s)}."
        fields = [
            ("Watch", who),
            ("Memory now", f"{format_bytes(event.level)} (the floor after garbage collection)"),
            (
                "Growth",
                f"{format_rate(event.rate_per_s)} ({event.rate_per_s:.4g} bytes/s, "
                "Theil-Sen fit over bucket minimums)",
            ),
            ("Limit", limit),
            ("Time left", left),
            ("Evidence", _evidence(event)),
            ("First seen", since),
        ]
    elif event.kind == "disk":
        size = _finite(event.limit)
        headline = (
            f"The filesystem at {name} is filling up: {format_rate(event.rate_per_s)}. "
            f"At this rate it is full in ~{format_approx(event.seconds_to_limit)}."
        )
        fields = [
            ("Mount point", name),
            ("Used", f"{format_bytes(event.level)} of {format_bytes(size)}"),
            ("Available", format_bytes(max(0.0, size - event.level))),
            ("Growth", f"{format_rate(event.rate_per_s)} (Theil-Sen fit over bucket minimums)"),
            (
                "Full in",
                f"~{format_approx(event.seconds_to_limit)} "
                f"(around {_when(event.at + _finite(event.seconds_to_limit), tz)})",
            ),
            ("Evidence", _evidence(event)),
            ("First seen", since),
        ]
    elif event.kind == "slower":
        usual = _finite(event.usual)
        ratio = event.level / usual if usual > 0 else math.inf
        headline = (
            f"{name} is getting slower: its median response time is "
            f"{format_latency(event.level)}, against {format_latency(event.usual)} usually."
        )
        fields = [
            ("Site", name),
            (
                "Median now",
                f"{format_latency(event.level)} ({event.samples} probes over the last "
                f"{_span(event.covered)})",
            ),
            ("Usual median", f"{format_latency(event.usual)} (over {_span(event.window)})"),
            ("Slower by", f"{ratio:.1f}x, +{format_latency(event.level - usual)}"),
            ("Slower since", since),
        ]
    else:
        headline = (
            f"CPU steal is at {_pct(event.level)}, at or above the warning threshold of "
            f"{_pct(event.limit)}."
        )
        fields = [
            ("CPU steal", f"{_pct(event.level)} (mean of {event.samples} samples)"),
            ("Threshold", _pct(event.limit)),
            ("Since", since),
        ]
    return [headline, "", *_fields(fields), "", *_WHAT_TO_DO[event.kind]]


def _ended_body(event: TrendEnded, tz: tzinfo | None) -> list[str]:
    w = event.warning
    name = one_line(w.subject, 500) or "?"
    if event.reason == "restarted":
        if w.kind == "disk":
            why = f"Space was freed on {name}, which starts a new trend."
        else:
            why = (
                f"{name} restarted, which resets its memory. If the leak was not fixed, it grows "
                "again and sentinel warns again once the new trend is confirmed."
            )
    elif event.reason == "removed":
        why = (
            f"{name} was removed from sentinel's config (or its watching turned off), so "
            "sentinel no longer watches it. This closes the warning; the trend itself may go on."
        )
    elif event.reason == "changed":
        why = (
            f"The config for {name} changed what or how it is sampled, so sentinel starts its "
            "trend afresh. It warns again if the new samples confirm the trend."
        )
    else:
        why = f"The trend has ended ({one_line(event.reason, 300)})."
    level = ""
    if event.level is not None:
        if w.kind == "slower":
            level = format_latency(event.level)
        elif w.kind == "steal":
            level = _pct(event.level)
        else:
            level = format_bytes(event.level)
    fields = [
        ("Warning", _warning_subject(w)),
        ("Warned at", _when(w.at, tz)),
        ("Ended at", _when(event.at, tz)),
        ("Lasted", _span(event.at - w.since)),
    ]
    if level:
        fields.append(("Now", level))
    return [f"Resolved: {_warning_subject(w)}", "", why, "", *_fields(fields)]


def _oom_body(event: OomEvent, tz: tzinfo | None) -> list[str]:
    name = one_line(event.watch, 500) or "?"
    lines = []
    if event.oom_kills:
        lines.append(
            f"The kernel's out-of-memory killer killed {event.oom_kills} process(es) of {name}: "
            "its memory reached memory.max."
        )
    if event.high_events:
        lines.append(
            f"{name} went over memory.high {event.high_events} time(s): the kernel throttled it "
            "and forced it to reclaim memory, which makes it slow."
        )
    fields = [("Watch", f"{name} ({one_line(event.source, 500)})" if event.source else name)]
    fields.append(("Detected", _when(event.at, tz)))
    fields.append(("OOM kills", str(event.oom_kills)))
    fields.append(("memory.high breaches", str(event.high_events)))
    if event.level is not None:
        fields.append(("Memory now", format_bytes(event.level)))
    if event.limit is not None:
        fields.append(("Limit", f"{format_bytes(event.limit)} ({event.limit_source or 'limit'})"))
    return [" ".join(lines), "", *_fields(fields), "", *_WHAT_TO_DO["oom"]]


def build_early_message(
    event: EarlyEvent, *, sender: str, recipients: Sequence[str], tz: tzinfo | None = None
) -> EmailMessage:
    """The email for an early-warning event, its times in `tz` (`[sentinel] timezone`; None:
    UTC). Same event + addresses -> the same message."""
    domain = message_domain(sender)
    message_id, parent = early_message_id(event, domain=domain)
    if isinstance(event, TrendStarted):
        body = _started_body(event, tz)
    elif isinstance(event, TrendEnded):
        body = _ended_body(event, tz)
    else:
        body = _oom_body(event, tz)
    msg = base_message(
        sender=sender,
        recipients=recipients,
        subject=early_subject(event),
        at=event.at,
        message_id=message_id,
        kind=early_message_kind(event),
        root=parent,
    )
    # The text wrapped to 78 columns like every sentinel email (notify.mime).
    attach_bodies(msg, [*body, "", "-- ", "sentinel"], None)
    return msg
