"""The daemon's heartbeat part: the states in memory, the lateness timer, pings from the web
server, metrics, and the one place where alerts are made (`alert_heartbeat`).

Every change goes one way: ping or timer -> state.ping/check -> persist (state + emails in one
store transaction, through the outbox) -> metrics and a log line. The states are restored from
the store at start with `resumed_at = now` (the restart rule lives in `state`).

Maintenance windows and silences: `muted(name, now)` (the daemon's, the same rule as sites) is
asked on every ping and timer look. A held incident (opened while muted) is looked at on every
timer tick (at most MAX_TIMER_SLEEP apart) and when `poke()` says the silences changed, so its
alert goes out within seconds of the mute ending.
"""

from __future__ import annotations

import asyncio
import email.policy as email_policy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sentinel.config import EmailConfig
from sentinel.heartbeats import state as hb
from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.heartbeats.endpoint import PingEndpoint, PingTarget, Rejection, TokenBucket
from sentinel.heartbeats.messages import (
    build_heartbeat_message,
    clean_output,
    heartbeat_message_kind,
)
from sentinel.heartbeats.metrics import HeartbeatMetrics
from sentinel.logsetup import kv
from sentinel.notify.alert_context import display_tz
from sentinel.notify.payload import Alert
from sentinel.promtext import Registry
from sentinel.store import Outgoing, StoreError, decode_dataclass, encode_dataclass

if TYPE_CHECKING:
    from sentinel.notify.dispatch import Dispatcher
    from sentinel.store import Store

log = logging.getLogger("sentinel.heartbeats")

MAX_TIMER_SLEEP = 5.0  # the timer looks at least this often (a wall-clock step is noticed)

# (state, events) -> None: write the state and send the events' alerts.
Persist = Callable[[hb.HeartbeatState, Sequence[hb.Event]], None]
# (name, now) -> True while a maintenance window or a silence covers the heartbeat.
Muted = Callable[[str, float], bool]


def never_muted(name: str, now: float) -> bool:
    del name, now
    return False


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def heartbeat_alert(event: hb.Event, *, status_page: str | None) -> Alert:
    """A heartbeat event as a channel-neutral Alert (webhook payload, Alertmanager, apprise)."""
    subject = str(_subject(event)).removeprefix("[sentinel]").strip()
    kind = heartbeat_message_kind(event)
    if isinstance(event, hb.Recovered):
        since, reason, message = event.since, event.was, ""
    elif isinstance(event, hb.Failed):
        since, reason, message = event.at, "failed", clean_output(event.output)[-500:]
    else:
        since, reason, message = event.expected_at, "late", ""
    return Alert(
        kind=kind,
        site=event.name,
        url=None,
        summary=subject,
        reason=reason,
        message=" ".join(message.split())[:500],
        since=since,
        at=event.at,
        incident_id=event.incident_id,
        status_page=status_page,
    )


def _subject(event: hb.Event) -> str:
    return str(build_heartbeat_message(event, email=_SUBJECT_ONLY)["Subject"])


# Only for the subject line (the recipients never see it: alert emails are built per config).
_SUBJECT_ONLY = EmailConfig(sender="sentinel@localhost", recipients=("nobody@localhost",))


def alert_heartbeat(
    *,
    store: Store | None,
    dispatch: Dispatcher,
    email: EmailConfig | None,
    state: hb.HeartbeatState,
    events: Sequence[hb.Event],
    on_store_error: Callable[[StoreError], None],
    now: float,
) -> None:
    """Persist a heartbeat's state and enqueue the alerts of `events` (every routed channel) in
    one transaction. A failed write still sends the alerts, from memory."""
    outgoing: list[Outgoing] = []
    for event in events:

        def email_bytes(event: hb.Event = event) -> bytes:
            assert email is not None
            config = dispatch.config
            page = config.status_page if config is not None else None
            tz = display_tz(page.timezone) if page is not None else None
            message = build_heartbeat_message(event, email=email, tz=tz)
            return message.as_bytes(policy=email_policy.SMTP)

        alert = heartbeat_alert(event, status_page=dispatch.status_page)
        outgoing.extend(dispatch.outgoing_for_alert(alert, email_bytes))
    if store is None:
        return
    try:
        store.save_heartbeat(state.name, encode_dataclass(state), outgoing)
    except StoreError as exc:
        on_store_error(exc)
        if outgoing:
            dispatch.enqueue_unstored(outgoing)
        return
    if outgoing:
        dispatch.wake()


def load_states(store: Store) -> dict[str, hb.HeartbeatState]:
    """The saved states; a row that cannot be decoded is skipped with a warning."""
    states = {}
    for name, text in store.load_heartbeats().items():
        try:
            states[name] = decode_dataclass(hb.HeartbeatState, text)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable saved state of heartbeat %r: %s", name, exc)
    return states


class HeartbeatService:
    def __init__(
        self,
        registry: Registry,
        persist: Persist,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        muted: Muted = never_muted,
    ) -> None:
        self.metrics = HeartbeatMetrics(registry)
        self._persist = persist
        self.muted = muted
        self._clock = clock
        self._monotonic = monotonic
        self.configs: dict[str, HeartbeatConfig] = {}
        self.states: dict[str, hb.HeartbeatState] = {}
        self._tokens: dict[str, bytes | None] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._deadlines: dict[str, float] = {}
        self._changed = asyncio.Event()
        self.endpoint = PingEndpoint(
            self._token_for,
            self._allow,
            self._accept,
            on_reject=self._on_reject,
            monotonic=monotonic,
        )

    # ------------------------------------------------------------------ configuration

    def configure(
        self,
        configs: Sequence[HeartbeatConfig],
        tokens: Mapping[str, bytes | None],
        saved: Mapping[str, hb.HeartbeatState] | None = None,
    ) -> list[str]:
        """Apply a (new) config. `saved`: the states from the store, at start only (they are
        resumed: the restart rule). Returns the names that left the config."""
        now = self._clock()
        old = set(self.configs)
        self.configs = {c.name: c for c in configs}
        self._tokens = {c.name: tokens.get(c.name) for c in configs}
        removed = sorted(old - self.configs.keys())
        for name in removed:
            self.states.pop(name, None)
            self._buckets.pop(name, None)
            self._deadlines.pop(name, None)
            self.metrics.remove(name)
        for name in self.configs:
            if name in self.states:
                continue
            restored = (saved or {}).get(name)
            if restored is not None:
                self.states[name] = hb.resume(restored, now)
            else:
                self.states[name] = hb.new_state(name, now)
                self._persist(self.states[name], ())
        for name, config in self.configs.items():
            self._deadlines[name] = hb.deadline(self.states[name], config)
            self.metrics.set_state(self.states[name])
        self.metrics.count.set(len(self.configs))
        self._changed.set()
        return removed

    def start(
        self,
        configs: Sequence[HeartbeatConfig],
        tokens: Mapping[str, bytes | None],
        store: Store | None,
    ) -> None:
        """At daemon start: restore the saved states (resumed now) and apply the config."""
        saved: dict[str, hb.HeartbeatState] = {}
        if store is not None:
            try:
                saved = load_states(store)
            except StoreError as exc:
                log.error("cannot read saved heartbeat states, starting fresh: %s", exc)
        self.configure(configs, tokens, saved)
        self._forget_removed(store)

    def reload(
        self,
        configs: Sequence[HeartbeatConfig],
        tokens: Mapping[str, bytes | None],
        store: Store | None,
    ) -> None:
        """SIGHUP with a valid config: new heartbeats start as new, removed ones are forgotten."""
        self.configure(configs, tokens)
        self._forget_removed(store)

    def _forget_removed(self, store: Store | None) -> None:
        if store is None:
            return
        try:
            store.forget_heartbeats(self.configs.keys())
        except StoreError as exc:
            log.error("state store write failed (monitoring continues): %s", exc)

    # ------------------------------------------------------------------ pings (web server)

    async def handle(
        self, method: str, target: str, head: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, str]:
        """The web server's route for /ping/..."""
        return await self.endpoint.handle(method, target, head, reader)

    def _token_for(self, name: str) -> tuple[bool, bytes | None]:
        if name not in self.configs:
            return False, None
        return True, self._tokens.get(name)

    def _allow(self, name: str, mono: float) -> bool:
        bucket = self._buckets.get(name)
        if bucket is None:  # only configured names get here: bounded by the config
            bucket = self._buckets[name] = TokenBucket(mono)
        return bucket.take(mono)

    def _on_reject(self, reason: Rejection) -> None:
        self.metrics.rejected.labels(reason).inc()

    def _accept(self, target: PingTarget, output: str) -> None:
        config = self.configs.get(target.name)
        current = self.states.get(target.name)
        if config is None or current is None:
            return  # removed by a reload while the body was read
        now = self._clock()
        step = hb.ping(
            current,
            config,
            target.kind,
            now,
            exit_code=target.exit_code,
            output=output,
            muted=self.muted(target.name, now),
        )
        self.metrics.pings.labels(target.name, target.kind).inc()
        log.debug("heartbeat ping %s", kv(heartbeat=target.name, kind=target.kind))
        self._apply(config, step)

    # ------------------------------------------------------------------ the timer

    def check_all(self) -> None:
        """Open LATE incidents past their deadline; send held alerts whose mute has ended."""
        now = self._clock()
        for name, due in list(self._deadlines.items()):
            current = self.states[name]
            if now > due or current.held:  # held ones: bounded by the configured names
                config = self.configs[name]
                step = hb.check(current, config, now, muted=self.muted(name, now))
                if step.state != current or step.events:
                    self._apply(config, step)

    def poke(self) -> None:
        """Look again now (the silences changed: a held alert may be due)."""
        self._changed.set()

    async def run(self) -> None:
        """Look for late heartbeats when the next deadline passes (or a ping changed one)."""
        while True:
            self.check_all()
            now = self._clock()
            soonest = min(self._deadlines.values(), default=math.inf)
            wait = min(MAX_TIMER_SLEEP, max(0.0, soonest - now) + 0.01)
            self._changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _apply(self, config: HeartbeatConfig, step: hb.Transition) -> None:
        before = self.states.get(config.name)
        self.states[config.name] = step.state
        self._deadlines[config.name] = (
            math.inf if step.state.alert else hb.deadline(step.state, config)
        )
        if step.events or before != step.state:
            self._persist(step.state, step.events)
        self.metrics.set_state(step.state)
        if step.state.held and not (before is not None and before.held):
            # No alert (a maintenance window or a silence covers it): still say so in the log.
            log.info(
                "%s held %s",
                step.state.alert.upper(),
                kv(heartbeat=config.name, reason="maintenance or silence"),
            )
        for event in step.events:
            _log_event(event)
        self._changed.set()

    # ------------------------------------------------------------------ status views

    def status(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            status_dict(self.configs[name], state, now)
            for name, state in self.states.items()
            if name in self.configs
        ]


def status_dict(config: HeartbeatConfig, state: hb.HeartbeatState, now: float) -> dict[str, Any]:
    """One heartbeat as /api/status shows it (and `sentinel status` from the store)."""
    age = None if state.last_ping is None else round(max(0.0, now - state.last_ping), 3)
    return {
        "heartbeat": state.name,
        "schedule": config.describe(),
        "grace": config.grace,
        "status": state.status,
        "last_ping": _iso(state.last_ping),
        "last_ping_age_seconds": age,
        "last_ping_kind": state.last_ping_kind,
        "last_exit": state.last_exit,
        "last_duration": None if state.last_duration is None else round(state.last_duration, 3),
        "running_since": _iso(state.started_at),
        "expected_at": None if state.alert else _iso(hb.expected_at(state, config)),
        "incident_since": _iso(state.incident_since),
        "alert_held": state.held,  # opened while muted: alerted if still open when that ends
    }


def _log_event(event: hb.Event) -> None:
    if isinstance(event, hb.Late):
        log.warning(
            "LATE %s",
            kv(
                heartbeat=event.name,
                last_ping=_iso(event.last_ping),
                expected=_iso(event.expected_at),
            ),
        )
    elif isinstance(event, hb.Failed):
        log.warning("FAILED %s", kv(heartbeat=event.name, exit=event.exit_code))
    else:
        log.warning("RECOVERED %s", kv(heartbeat=event.name, was=event.was))
