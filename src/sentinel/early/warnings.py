"""The alert policy of the early warnings: when a verdict becomes an email. Pure, `now` passed in.

One `WarningState` per watch, mount, site or "cpu". A trend is warned about once, after `confirm`
consecutive qualifying evaluations, and resolved once: at a restart (a new segment), or after
`clear_after` evaluations without growth. OOM kills and memory.high breaches are immediate, then
coalesced: at most one OomEvent per watch per `OOM_COOLDOWN`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sentinel.early.events import (
    EarlyEvent,
    MemoryEvents,
    OomEvent,
    TrendEnded,
    TrendKind,
    TrendStarted,
    trend_id_for,
)
from sentinel.early.latency import DriftVerdict
from sentinel.early.trend import Verdict

DAY = 86400.0
OOM_COOLDOWN = 3600.0  # OOM events of one watch within this are reported together
STEAL_CONSECUTIVE = 5  # samples over (or back under) the steal threshold in a row


@dataclass(frozen=True, slots=True)
class WarnSettings:
    warn_within: float = 3 * DAY  # the forecast must reach the limit within this
    min_growth: float = 10 * 1024 * 1024 / DAY  # bytes/s
    confirm: int = 2  # consecutive qualifying evaluations before the warning
    clear_after: int = 3  # consecutive evaluations without growth before RESOLVED
    require_forecast: bool = True  # False for sentinel itself: any confirmed growth counts


@dataclass(frozen=True, slots=True)
class WarningState:
    kind: TrendKind
    subject: str
    source: str = ""
    streak: int = 0  # consecutive qualifying evaluations while no warning is active
    streak_since: float | None = None
    streak_segment: int | None = None
    streak_sum: float = 0.0  # steal: the sum of the ratios of the streak
    quiet: int = 0  # consecutive evaluations without the trend while a warning is active
    active: TrendStarted | None = None
    active_segment: int | None = None


Step = tuple[WarningState, tuple[EarlyEvent, ...]]


def _idle(state: WarningState) -> WarningState:
    return WarningState(kind=state.kind, subject=state.subject, source=state.source)


def _ended(state: WarningState, now: float, reason: str, level: float | None) -> Step:
    assert state.active is not None
    return _idle(state), (TrendEnded(warning=state.active, at=now, reason=reason, level=level),)


def qualifies(verdict: Verdict, settings: WarnSettings) -> bool:
    """Rising, at least min_growth, and (when required) forecast to reach the limit in time."""
    if not verdict.rising or verdict.rate_per_s is None:
        return False
    if verdict.rate_per_s < settings.min_growth:
        return False
    if not settings.require_forecast:
        return True
    return verdict.seconds_to_limit is not None and verdict.seconds_to_limit <= settings.warn_within


def step(
    state: WarningState,
    verdict: Verdict,
    settings: WarnSettings,
    now: float,
    *,
    limit_source: str = "",
) -> Step:
    """Fold one trend verdict (memory, disk, sentinel itself) into the warning state.
    `limit_source` names the limit the forecast used ("memory.max", "MemTotal", ...)."""
    rate = verdict.rate_per_s or 0.0
    if state.active is not None:
        if verdict.segment != state.active_segment:
            return _ended(state, now, "restarted", verdict.last_value)
        if verdict.rising and rate >= settings.min_growth / 2:
            return replace(state, quiet=0), ()
        quiet = state.quiet + 1
        if quiet >= max(1, settings.clear_after):
            if verdict.rate_per_s is None:
                why = "no recent samples"  # the buckets of the trend aged out of the window
            else:
                why = verdict.reason or "growth below half of min_growth"
            return _ended(state, now, f"stopped rising: {why}", verdict.last_value)
        return replace(state, quiet=quiet), ()

    if not qualifies(verdict, settings):
        return _idle(state), ()
    continuing = state.streak > 0 and state.streak_segment == verdict.segment
    streak = state.streak + 1 if continuing else 1
    since = state.streak_since if continuing and state.streak_since is not None else now
    if streak < max(1, settings.confirm):
        return (
            replace(state, streak=streak, streak_since=since, streak_segment=verdict.segment),
            (),
        )
    started = TrendStarted(
        kind=state.kind,
        subject=state.subject,
        trend_id=trend_id_for(state.kind, state.subject, since),
        at=now,
        since=since,
        level=verdict.level or 0.0,
        rate_per_s=rate,
        limit=verdict.limit,
        limit_source=limit_source,
        seconds_to_limit=verdict.seconds_to_limit,
        samples=verdict.samples,
        buckets=verdict.buckets,
        covered=verdict.covered,
        window=verdict.window,
        evaluations=streak,
        source=state.source,
    )
    return replace(_idle(state), active=started, active_segment=verdict.segment), (started,)


def step_drift(state: WarningState, verdict: DriftVerdict, consecutive: int, now: float) -> Step:
    """Latency drift: SLOWER after `consecutive` drifting evaluations, RESOLVED after as many
    evaluations back under the thresholds."""
    k = max(1, consecutive)
    if state.active is not None:
        if verdict.drifting:
            return replace(state, quiet=0), ()
        quiet = state.quiet + 1
        if quiet >= k:
            return _ended(state, now, "back to usual", verdict.recent)
        return replace(state, quiet=quiet), ()
    if not verdict.drifting or verdict.recent is None or verdict.baseline is None:
        return _idle(state), ()
    streak = state.streak + 1
    since = state.streak_since if state.streak_since is not None else now
    if streak < k:
        return replace(state, streak=streak, streak_since=since), ()
    started = TrendStarted(
        kind="slower",
        subject=state.subject,
        trend_id=trend_id_for("slower", state.subject, since),
        at=now,
        since=since,
        level=verdict.recent,
        usual=verdict.baseline,
        samples=verdict.recent_probes,
        buckets=verdict.recent_buckets,
        covered=verdict.recent_span,
        window=verdict.baseline_span,
        evaluations=streak,
        source=state.source,
    )
    return replace(_idle(state), active=started), (started,)


def step_steal(
    state: WarningState,
    ratio: float | None,
    threshold: float,
    now: float,
    consecutive: int = STEAL_CONSECUTIVE,
) -> Step:
    """CPU steal: a warning after `consecutive` samples at or above `threshold` (0 = never),
    resolved after as many samples below it."""
    if ratio is None or threshold <= 0:
        return state, ()
    k = max(1, consecutive)
    over = ratio >= threshold
    if state.active is not None:
        if over:
            return replace(state, quiet=0), ()
        quiet = state.quiet + 1
        if quiet >= k:
            return _ended(state, now, "back under the threshold", ratio)
        return replace(state, quiet=quiet), ()
    if not over:
        return _idle(state), ()
    streak = state.streak + 1
    total = state.streak_sum + ratio
    since = state.streak_since if state.streak_since is not None else now
    if streak < k:
        return replace(state, streak=streak, streak_since=since, streak_sum=total), ()
    started = TrendStarted(
        kind="steal",
        subject=state.subject,
        trend_id=trend_id_for("steal", state.subject, since),
        at=now,
        since=since,
        level=total / streak,
        limit=threshold,
        samples=streak,
        covered=max(0.0, now - since),
        evaluations=streak,
        source=state.source,
    )
    return replace(_idle(state), active=started), (started,)


# ---------------------------------------------------------------- OOM


@dataclass(frozen=True, slots=True)
class OomState:
    last: MemoryEvents | None = None  # the counters at the previous sample
    pending_kills: int = 0  # increases not yet reported (inside the cooldown)
    pending_high: int = 0
    last_alert: float | None = None


def step_oom(
    state: OomState,
    counters: MemoryEvents | None,
    *,
    watch: str,
    now: float,
    level: float | None = None,
    limit: float | None = None,
    limit_source: str = "",
    source: str = "",
    cooldown: float = OOM_COOLDOWN,
) -> tuple[OomState, tuple[OomEvent, ...]]:
    """An increase of memory.events oom_kill or high is reported at once; later increases within
    `cooldown` are added up and reported when it has passed. The first sample only sets the
    baseline (history before sentinel started is not news). Counters that went down mean a new
    cgroup (the unit was restarted): they count from zero."""
    if counters is None:
        return state, ()
    if state.last is None:
        return replace(state, last=counters), ()
    reset = counters.oom_kill < state.last.oom_kill or counters.high < state.last.high
    base = MemoryEvents() if reset else state.last
    kills = state.pending_kills + max(0, counters.oom_kill - base.oom_kill)
    high = state.pending_high + max(0, counters.high - base.high)
    new = replace(state, last=counters, pending_kills=kills, pending_high=high)
    if kills == 0 and high == 0:
        return new, ()
    if state.last_alert is not None and now - state.last_alert < cooldown:
        return new, ()
    event = OomEvent(
        watch=watch,
        event_id=f"oom:{watch}:{now:.3f}",
        at=now,
        oom_kills=kills,
        high_events=high,
        level=level,
        limit=limit,
        limit_source=limit_source,
        source=source,
    )
    return OomState(last=counters, last_alert=now), (event,)
