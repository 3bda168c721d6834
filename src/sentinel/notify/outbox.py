"""The single sender task that drains the durable outbox in order, with retries and backoff.

Owns delivery policy, not delivery: it takes the oldest email from the `Store`, hands it to a
channel's `send`, and on success deletes it. A transient failure retries the same email with
exponential backoff and holds back the later ones (alerts arrive in order); a permanent one is
retried `max_attempts_permanent` times and then moved to the dead letters. An email is deleted only
after `send` returned, so a crash or cancellation mid-send means it is sent again after a restart
(at-least-once). The task never busy-loops (it waits on an asyncio.Event with a timeout) and never
dies of a failure: store errors are logged and retried after a pause.

When the store cannot take an email at all (a full disk), the daemon hands it over with
`enqueue_unstored`: it is sent from memory, after the stored ones, with the same retries, and lost
(loudly) only if sentinel stops first. An email delivered but not deletable from a full store is
remembered and skipped, so it is neither sent twice nor blocking the emails behind it.

With channels, one sender runs per channel (`channel`), taking only that channel's items: the
oldest item of each site goes first, so the order per site and channel holds while one channel's
outage (or one site's refused item) holds back nothing else. A queued reminder made stale by a
later one of the same incident is dropped unsent; an item that failed permanently, or waited
`escalate_after`, is handed to `escalate` (the fallback channel) once. With `regroup` (outage
grouping), alerts held to be grouped are released (maybe merged) before each look at the outbox;
a held item's next_attempt_at is the end of its wait, so the sender wakes up for it. Writes by
another process (`sentinel outbox retry`) are noticed within EXTERNAL_POLL seconds (SQLite's
data_version).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from sentinel.notify.errors import SendError
from sentinel.notify.policy import permanent_delay, superseded
from sentinel.store import OutboxItem, Outgoing, Store, StoreError

__all__ = ["OutboxSender", "retry_delay"]

log = logging.getLogger(__name__)

IDLE_POLL = 300.0  # safety net only: wake() is what sends a new email at once
JITTER = 0.1  # up to +10% on every backoff delay
UNSTORED_LIMIT = 100  # emails held in memory while the store cannot take them
EXTERNAL_POLL = 2.0  # how often an idle sender looks for writes by another process

# A channel's delivery: the stored item in, SendError out on failure.
Deliver = Callable[[OutboxItem], Awaitable[None]]


@dataclass(slots=True)
class _Unstored:
    """An email the store could not take, with its own retry bookkeeping."""

    outgoing: Outgoing
    next_attempt_at: float
    attempts: int = 0
    permanent_failures: int = 0


def retry_delay(failures: int, first: float, cap: float, jitter: float = 0.0) -> float:
    """Backoff before the next attempt after `failures` failed ones (>= 1): first, 2*first, ...,
    at most `cap`, then stretched by `jitter` (a fraction in [0, JITTER])."""
    exponent = max(0, failures - 1)
    delay = cap if exponent >= 64 else min(cap, first * (2.0**exponent))
    return delay * (1.0 + jitter)


def parse_message(raw: bytes) -> EmailMessage:
    """Stored bytes -> EmailMessage (policy.default, so the channel gets a modern message)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # pragma: no cover - policy.default guarantees it
        raise TypeError("stored email did not parse to an EmailMessage")
    return message


class OutboxSender:
    """Delivers the store's outbox through `send`. Run `run()` as one task; call `wake()` after
    enqueueing; `flush()` and `stop()` at shutdown."""

    def __init__(
        self,
        store: Store,
        send: Callable[[EmailMessage], Awaitable[None]] | None,
        *,
        channel: str = "email",
        deliver: Deliver | None = None,
        permanent_delays: Sequence[float] | None = None,
        escalate: Callable[[OutboxItem, bool], None] | None = None,
        on_dead: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
        on_sent: Callable[[str], None] | None = None,
        on_failure: Callable[[str, SendError], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
        regroup: Callable[[float], float | None] | None = None,
        max_attempts_permanent: int = 3,
        backoff_first: float = 2.0,
        backoff_cap: float = 60.0,
        send_timeout: float = 300.0,
    ) -> None:
        if max_attempts_permanent < 1:
            raise ValueError("max_attempts_permanent must be at least 1")
        if not 0 < backoff_first <= backoff_cap:
            raise ValueError("need 0 < backoff_first <= backoff_cap")
        if (send is None) == (deliver is None):
            raise ValueError("give exactly one of send (an email channel) or deliver")
        self._store = store
        self._send = send
        self.channel = channel
        self._deliver = deliver
        # None: the old rule (max_attempts_permanent tries at the usual backoff).
        self.permanent_delays = None if permanent_delays is None else tuple(permanent_delays)
        self._escalate = escalate
        self._on_dead = on_dead
        self._last_dead: int | None = None
        self._data_version: int | None = None
        self._clock = clock
        self._on_sent = on_sent
        self._on_failure = on_failure
        self._on_pending = on_pending
        self._regroup = regroup
        self.max_attempts_permanent = max_attempts_permanent
        self.backoff_first = backoff_first
        self.backoff_cap = backoff_cap
        self.send_timeout = send_timeout
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # replaced after each set: a broadcast to flush() waiters
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._last_pending: int | None = None
        # Delivered, but the store failed to delete them: never send these again.
        self._delivered: set[int] = set()
        self._unstored: deque[_Unstored] = deque()

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """Something was enqueued: look at the outbox now instead of at the next timeout."""
        self._wake.set()

    def enqueue_unstored(self, outgoing: Sequence[Outgoing]) -> None:
        """Emails the store could not take (e.g. a full disk): sent from memory after the stored
        ones, with the same retries. At most UNSTORED_LIMIT are held (the oldest go first)."""
        for item in outgoing:
            if len(self._unstored) >= UNSTORED_LIMIT:
                lost = self._unstored.popleft().outgoing
                log.error(
                    "email dropped: too many emails held in memory kind=%s site=%s",
                    lost.kind,
                    lost.site,
                )
            self._unstored.append(_Unstored(item, next_attempt_at=self._clock()))
            log.warning(
                "email held in memory only (the state store cannot take it) kind=%s site=%s",
                item.kind,
                item.site,
            )
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, grace: float = 5.0) -> None:
        """Let an email being sent finish (up to `grace` seconds), then end `run()`."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 (the agreed shutdown API)
        """Wait until no email is due (all sent, or the oldest is waiting for a retry), at most
        `timeout` seconds. True if that happened, False on timeout or a store error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            progress = self._progress
            try:
                heads = self._heads(self._clock())
            except StoreError as exc:
                log.error("outbox flush: %s", exc)
                return False
            if not heads:
                due = bool(self._unstored) and self._unstored[0].next_attempt_at <= self._clock()
            else:
                due = any(self._is_due(item) for item in heads)
            if not self._sending and not due:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await progress.wait()

    # ------------------------------------------------------------------ the task

    async def run(self) -> None:
        """The sender loop; ends only when stopped or cancelled."""
        self._task = asyncio.current_task()
        store_failures = 0
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    wait = await self._step()
                    store_failures = 0
                except StoreError as exc:
                    store_failures += 1
                    wait = retry_delay(store_failures, self.backoff_first, self.backoff_cap)
                    log.error("outbox: state store error, retrying in %.0fs: %s", wait, exc)
                except Exception:
                    # A bug, not the world; say so loudly and keep the queue alive.
                    store_failures += 1
                    wait = retry_delay(store_failures, self.backoff_first, self.backoff_cap)
                    log.exception("outbox: unexpected error, retrying in %.0fs", wait)
                self._notify_progress()
                if wait > 0 and not self._stopping:
                    await self._wait(wait)
        finally:
            self._sending = False
            self._notify_progress()
            if self._unstored:
                log.error(
                    "%d email(s) held in memory were not sent and are lost: %s",
                    len(self._unstored),
                    ", ".join(f"{u.outgoing.kind}/{u.outgoing.site}" for u in self._unstored),
                )

    async def _step(self) -> float:
        """One look at the outbox: send the oldest email if due. Returns how long to wait next."""
        store_error: StoreError | None = None
        for item_id in sorted(self._delivered):
            try:
                self._store.outbox_done(item_id)
            except StoreError as exc:
                store_error = exc  # skipped below; deleted once the store works again
                break
            self._delivered.discard(item_id)
        now = self._clock()
        group_wait: float | None = None  # seconds until a held alert's wait ends
        try:
            if self._regroup is not None:
                # Outage grouping: alerts whose wait is over go out now, maybe as one.
                group_wait = self._regroup(now)
            self._data_version = self._store.data_version()
            heads = self._heads(now)
            self._report_pending()
        except StoreError:
            if not self._unstored:
                raise
            heads = []
        if not heads:
            if self._unstored:
                return await self._step_unstored(now)
            if store_error is not None:
                raise store_error  # run() logs it and tries again after a pause
            return IDLE_POLL if group_wait is None else min(IDLE_POLL, group_wait)
        due = [item for item in heads if self._is_due(item, now)]
        if not due:
            wait = min(item.next_attempt_at for item in heads) - now
            return wait if group_wait is None else min(wait, group_wait)
        item = due[0]
        if item.kind == "still_down" and superseded(
            item.kind, self._store.outbox_later_kinds(item)
        ):
            log.info(
                "stale reminder dropped, a later one is queued channel=%s site=%s",
                self.channel,
                item.site,
            )
            self._store.outbox_done(item.id)
            return 0.0
        error = await self._attempt_item(item)
        if error is None:
            self._delivered.add(item.id)
            self._call(self._on_sent, item.kind)
            log.info("%s sent kind=%s site=%s", self._what, item.kind, item.site)
            self._store.outbox_done(item.id)
            self._delivered.discard(item.id)
        else:
            self._failed(item, error)
        self._report_pending()
        return 0.0

    @property
    def _what(self) -> str:
        return "email" if self.channel == "email" else f"alert on {self.channel}"

    def _heads(self, now: float) -> list[OutboxItem]:
        return self._store.outbox_heads(self.channel, now, exclude=self._delivered)

    async def _attempt_item(self, item: OutboxItem) -> SendError | None:
        if self._deliver is None:
            return await self._attempt(item.message)
        return await self._guarded(self._deliver(item))

    async def _step_unstored(self, now: float) -> float:
        """Send the oldest email held in memory, if due."""
        entry = self._unstored[0]
        if entry.next_attempt_at > now:
            return entry.next_attempt_at - now
        out = entry.outgoing
        if self._deliver is None:
            error = await self._attempt(out.message)
        else:
            error = await self._attempt_item(_as_item(out, now))
        if error is None:
            self._unstored.popleft()
            self._call(self._on_sent, out.kind)
            log.info("email sent (held in memory) kind=%s site=%s", out.kind, out.site)
            self._report_pending_safely()
            return 0.0
        self._call(self._on_failure, out.kind, error)
        entry.attempts += 1
        if error.permanent:
            entry.permanent_failures += 1
            if entry.permanent_failures >= self.max_attempts_permanent:
                self._unstored.popleft()
                log.error(
                    "email given up after %d attempts (held in memory) kind=%s site=%s error=%s",
                    entry.attempts,
                    out.kind,
                    out.site,
                    error.detail,
                )
                return 0.0
        delay = retry_delay(
            entry.attempts, self.backoff_first, self.backoff_cap, random.uniform(0, JITTER)
        )
        entry.next_attempt_at = self._clock() + delay
        log.log(
            logging.DEBUG if self._on_failure is not None else logging.WARNING,
            "email not sent, retrying in %.1fs (held in memory) "
            "kind=%s site=%s attempt=%d error=%s",
            delay,
            out.kind,
            out.site,
            entry.attempts,
            error.detail,
        )
        return 0.0

    async def _attempt(self, raw: bytes) -> SendError | None:
        try:
            message = parse_message(raw)
        except Exception as exc:
            return SendError(f"stored email cannot be parsed: {exc}", permanent=True)
        assert self._send is not None
        return await self._guarded(self._send(message))

    async def _guarded(self, sending: Awaitable[None]) -> SendError | None:
        """Run one delivery within send_timeout; any failure becomes a SendError."""
        self._sending = True
        try:
            async with asyncio.timeout(self.send_timeout):
                await sending
        except SendError as exc:
            return exc
        except TimeoutError:
            return SendError(f"send timed out after {self.send_timeout:g}s", permanent=False)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # we are being stopped: the email stays in the outbox
            return SendError("send was cancelled", permanent=False)
        except Exception as exc:
            return SendError(f"{type(exc).__name__}: {exc}", permanent=False)
        finally:
            self._sending = False
        return None

    def _failed(self, item: OutboxItem, error: SendError) -> None:
        self._call(self._on_failure, item.kind, error)
        if self._escalate is not None:
            try:
                self._escalate(item, error.permanent)
            except StoreError:
                raise
            except Exception:
                log.exception("outbox: handing an alert to the fallback channel failed")
        permanent_failures = item.permanent_failures + (1 if error.permanent else 0)
        delay: float | None = None
        if error.permanent and self.permanent_delays is not None:
            delay = permanent_delay(permanent_failures, self.permanent_delays)
            give_up = delay is None
        else:
            give_up = error.permanent and permanent_failures >= self.max_attempts_permanent
        if give_up:
            log.error(
                "%s given up after %d attempts, moved to dead letters kind=%s site=%s error=%s",
                self._what,
                item.attempts + 1,
                item.kind,
                item.site,
                error.detail,
            )
            self._store.outbox_give_up(item.id, error.detail, now=self._clock())
            self._report_pending_safely()
            return
        if delay is None:
            delay = retry_delay(
                item.attempts + 1, self.backoff_first, self.backoff_cap, random.uniform(0, JITTER)
            )
        log.log(
            logging.DEBUG if self._on_failure is not None else logging.WARNING,
            "%s not sent, retrying in %.1fs kind=%s site=%s attempt=%d error=%s",
            self._what,
            delay,
            item.kind,
            item.site,
            item.attempts + 1,
            error.detail,
        )
        self._store.outbox_retry_later(
            item.id, self._clock() + delay, error.detail, permanent=error.permanent
        )

    # ------------------------------------------------------------------ helpers

    def _is_due(self, item: OutboxItem, now: float | None = None) -> bool:
        if now is None:
            now = self._clock()
        # A retry is never scheduled further ahead than the cap (plus jitter); anything beyond
        # that means the wall clock jumped back, and waiting it out could take days.
        cap = max(self.backoff_cap, *(self.permanent_delays or (0.0,)))
        return item.next_attempt_at <= now or (
            item.next_attempt_at - now > cap * (1.0 + JITTER) + 1.0
        )

    async def _wait(self, seconds: float) -> None:
        """Until woken, `seconds` passed, or another process wrote to the store."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, EXTERNAL_POLL)):
                    await self._wake.wait()
                    return
            try:
                version = self._store.data_version()
            except StoreError:
                continue
            if self._data_version is not None and version != self._data_version:
                return

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _report_pending_safely(self) -> None:
        try:
            self._report_pending()
        except StoreError as exc:
            log.debug("outbox: cannot count pending emails: %s", exc)

    def _report_pending(self) -> None:
        if self._on_dead is not None:
            dead = self._store.dead_letter_count()
            if dead != self._last_dead:
                self._last_dead = dead
                self._call(self._on_dead, dead)
        if self._on_pending is None:
            return
        stored = max(0, self._store.outbox_pending() - len(self._delivered))
        count = stored + len(self._unstored)
        if count != self._last_pending:
            self._last_pending = count
            self._call(self._on_pending, count)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("outbox: callback %r failed", callback)


def _as_item(out: Outgoing, now: float) -> OutboxItem:
    """An item held in memory, in the shape a channel's `deliver` takes."""
    return OutboxItem(
        id=-1,
        kind=out.kind,
        site=out.site,
        created_at=out.created_at,
        next_attempt_at=now,
        attempts=0,
        permanent_failures=0,
        last_error=None,
        message=out.message,
        due=True,
        channel=out.channel,
        incident=out.incident,
        alert=out.alert,
    )
