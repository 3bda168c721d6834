"""The outbox sender against a real SMTP server (aiosmtpd on 127.0.0.1) and a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import email
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path
from typing import TypedDict

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol  # noqa: N811
from aiosmtpd.smtp import Envelope, Session

import daemon_proc
from sentinel.monitor import SiteState
from sentinel.notify.errors import SendError
from sentinel.notify.outbox import OutboxSender, retry_delay
from sentinel.store import Outgoing, Store
from timing import Stopwatch

HOST = "127.0.0.1"


class Backoff(TypedDict):
    backoff_first: float
    backoff_cap: float


class Callbacks(TypedDict):
    on_sent: Callable[[str], None]
    on_failure: Callable[[str, SendError], None]
    on_pending: Callable[[int], None]


FAST = Backoff(backoff_first=0.05, backoff_cap=0.2)


def free_port() -> int:
    return daemon_proc.free_port()


class Signal:
    """A list that async code can wait on: `await sig.reach(n, timeout)`; appends are thread-safe."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def append(self, item: object) -> None:
        self.items.append(item)
        if threading.current_thread() is threading.main_thread():
            self._changed.set()
        else:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def reach(self, count: int, timeout: float = 5.0) -> list[object]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                if len(self.items) >= count:
                    break
                await self._changed.wait()
        return list(self.items)


class Handler:
    """Accepts mail; subjects starting with "reject" get a 550; `script` answers the next messages
    with the given replies first; `hold` makes the next message hang until `release` is set."""

    def __init__(self) -> None:
        self.received = Signal()
        self.script: list[str] = []
        self.hold = False
        self.held = Signal()
        self.release = threading.Event()

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTPProtocol, session: Session, envelope: Envelope
    ) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=default)
        if str(message["Subject"]).startswith("reject"):
            return "550 5.7.1 rejected by policy"
        if self.script:
            return self.script.pop(0)
        if self.hold:
            self.hold = False
            self.held.append(message)
            await asyncio.to_thread(self.release.wait, 10)
            return "451 4.3.0 too late"  # the client is gone by now; never counted
        self.received.append(message)
        return "250 2.0.0 OK"

    @property
    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.received.items if isinstance(m, EmailMessage)]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = Handler()
        self._controller: Controller | None = None

    async def start(self) -> None:
        self._controller = Controller(self.handler, hostname=HOST, port=self.port)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        self.handler.release.set()
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def smtp_send(port: int) -> Callable[[EmailMessage], Awaitable[None]]:
    """A minimal SMTP channel: aiosmtplib errors -> SendError (5xx permanent, the rest not)."""

    async def send(message: EmailMessage) -> None:
        # Not aiosmtplib.send(): on cancellation its context manager waits for a QUIT reply.
        client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=5)
        try:
            await client.connect()
            await client.send_message(message)
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendError(str(exc), permanent=all(c >= 500 for c in codes)) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        finally:
            client.close()

    return send


def outgoing(subject: str, kind: str = "down") -> Outgoing:
    msg = EmailMessage()
    msg["From"] = "sentinel <sentinel@example.org>"
    msg["To"] = "owner@example.org"
    msg["Subject"] = subject
    msg.set_content(f"{subject}\n")
    return Outgoing(
        kind=kind, site="blog", message=msg.as_bytes(policy=SMTP), created_at=time.time()
    )


def enqueue(store: Store, *subjects: str) -> None:
    store.save_state(SiteState(site="blog"), [outgoing(s, kind=s) for s in subjects])


class Recorder:
    """The sender's callbacks, each a Signal to wait on."""

    def __init__(self) -> None:
        self.sent = Signal()
        self.failures = Signal()
        self.pending = Signal()

    def kwargs(self) -> Callbacks:
        return Callbacks(
            on_sent=self.sent.append,
            on_failure=lambda kind, err: self.failures.append((kind, err)),
            on_pending=self.pending.append,
        )

    @property
    def failure_list(self) -> list[tuple[str, SendError]]:
        return [f for f in self.failures.items if isinstance(f, tuple)]


@contextlib.asynccontextmanager
async def running(sender: OutboxSender) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sender.run())
    try:
        yield task
    finally:
        await sender.stop(grace=1.0)
        assert task.done()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


# ---------------------------------------------------------------------------- delivery


async def test_emails_are_delivered_in_order_and_a_new_one_goes_out_on_wake(
    store: Store, smtp: SmtpServer
) -> None:
    rec = Recorder()
    enqueue(store, "one", "two", "three")
    sender = OutboxSender(store, smtp_send(smtp.port), **rec.kwargs())
    async with running(sender):
        await smtp.handler.received.reach(3)
        assert smtp.handler.subjects == ["one", "two", "three"]
        await rec.pending.reach(1)  # idle now; the next poll is minutes away

        enqueue(store, "four")
        sender.wake()
        await smtp.handler.received.reach(4, timeout=2.0)

    assert smtp.handler.subjects == ["one", "two", "three", "four"]
    assert rec.sent.items == ["one", "two", "three", "four"]
    assert rec.failures.items == []
    assert store.outbox_pending() == 0


async def test_server_down_then_up_delivers_each_email_once_in_order(store: Store) -> None:
    port = free_port()  # nothing listens here yet
    rec = Recorder()
    enqueue(store, "first", "second", "third")
    sender = OutboxSender(store, smtp_send(port), **FAST, **rec.kwargs())
    server = SmtpServer(port)
    async with running(sender):
        await rec.failures.reach(3)
        # Order: only the oldest email is tried while the server is away.
        assert {kind for kind, _ in rec.failure_list} == {"first"}
        assert not any(err.permanent for _, err in rec.failure_list)

        await server.start()
        appeared = Stopwatch()
        try:
            await server.handler.received.reach(3, timeout=30.0)
            assert appeared.elapsed() < 3.0
            assert await sender.flush(timeout=5.0)
        finally:
            await server.stop()

    assert server.handler.subjects == ["first", "second", "third"]
    assert store.outbox_pending() == 0
    assert store.dead_letters() == []


async def test_a_421_reply_once_then_acceptance_delivers_exactly_once(
    store: Store, smtp: SmtpServer
) -> None:
    smtp.handler.script = ["421 4.3.2 try again later"]
    rec = Recorder()
    enqueue(store, "DOWN: blog")
    sender = OutboxSender(store, smtp_send(smtp.port), **FAST, **rec.kwargs())
    async with running(sender):
        await smtp.handler.received.reach(1)
        assert await sender.flush(timeout=5.0)

    assert smtp.handler.subjects == ["DOWN: blog"]
    [(kind, error)] = rec.failure_list
    assert kind == "DOWN: blog" and not error.permanent and "421" in error.detail
    assert rec.sent.items == ["DOWN: blog"]


async def test_a_550_is_given_up_after_max_attempts_and_later_emails_still_go_out(
    store: Store, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    enqueue(store, "reject me", "after-1", "after-2")
    sender = OutboxSender(
        store, smtp_send(smtp.port), max_attempts_permanent=3, **FAST, **rec.kwargs()
    )
    with caplog.at_level(logging.ERROR, logger="sentinel.notify.outbox"):
        async with running(sender):
            await smtp.handler.received.reach(2)

    assert smtp.handler.subjects == ["after-1", "after-2"]
    assert [kind for kind, _ in rec.failure_list] == ["reject me"] * 3
    assert all(err.permanent and "550" in err.detail for _, err in rec.failure_list)
    [letter] = store.dead_letters()
    assert (letter.kind, letter.attempts) == ("reject me", 3)
    assert "550" in letter.error
    assert any("given up" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert store.outbox_pending() == 0


async def test_a_transient_failure_retries_after_backoff_first(store: Store) -> None:
    rec = Recorder()
    enqueue(store, "first")
    sender = OutboxSender(
        store, smtp_send(free_port()), backoff_first=30.0, backoff_cap=60.0, **rec.kwargs()
    )
    async with running(sender):
        await rec.failures.reach(1)
        failed_at = time.time()
        item = store.outbox_next(now=failed_at)
        assert await sender.flush(timeout=1.0)  # nothing is due while it backs off

    assert item is not None and not item.due
    assert (item.attempts, item.permanent_failures) == (1, 0)
    assert item.last_error is not None
    wait = item.next_attempt_at - failed_at
    assert 30.0 * 0.9 <= wait <= 30.0 * 1.1 + 0.5
    assert len(rec.failures.items) == 1


def test_retry_delay_starts_at_first_doubles_and_is_capped() -> None:
    delays = [retry_delay(n, first=2.0, cap=60.0) for n in range(1, 9)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert retry_delay(10_000, first=2.0, cap=60.0) == 60.0
    assert retry_delay(1, first=2.0, cap=60.0, jitter=0.1) == pytest.approx(2.2)


# ---------------------------------------------------------------------------- lifecycle


async def test_cancelling_mid_send_leaves_the_email_pending_and_a_restart_sends_all_once(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    store = Store.open(tmp_path)
    enqueue(store, "a", "b", "c")
    smtp.handler.hold = True
    sender = OutboxSender(store, smtp_send(smtp.port), **FAST)
    task = asyncio.create_task(sender.run())
    await smtp.handler.held.reach(1)  # "a" is in the middle of its SMTP DATA
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.outbox_pending() == 3
    store.close()

    restarted = Store.open(tmp_path)
    rec = Recorder()
    again = OutboxSender(restarted, smtp_send(smtp.port), **FAST, **rec.kwargs())
    async with running(again):
        await smtp.handler.received.reach(3)
        assert await again.flush(timeout=5.0)
    assert smtp.handler.subjects == ["a", "b", "c"]
    assert restarted.outbox_pending() == 0
    restarted.close()


async def test_on_pending_reports_the_count_as_emails_go_out(
    store: Store, smtp: SmtpServer
) -> None:
    rec = Recorder()
    enqueue(store, "a", "b", "c")
    sender = OutboxSender(store, smtp_send(smtp.port), **rec.kwargs())
    async with running(sender):
        await rec.pending.reach(4)
    assert rec.pending.items == [3, 2, 1, 0]


async def test_flush_times_out_on_a_hung_send_and_succeeds_once_it_completes(
    store: Store, smtp: SmtpServer
) -> None:
    smtp.handler.hold = True
    enqueue(store, "stuck", "next")
    sender = OutboxSender(store, smtp_send(smtp.port), send_timeout=30.0, **FAST)
    async with running(sender):
        await smtp.handler.held.reach(1)
        assert await sender.flush(timeout=0.2) is False
        smtp.handler.release.set()  # the server answers 451: "stuck" backs off, then goes out
        await smtp.handler.received.reach(2)
        assert await sender.flush(timeout=5.0) is True
    assert smtp.handler.subjects == ["stuck", "next"]
    assert store.outbox_pending() == 0


async def test_stop_ends_an_idle_sender_promptly(store: Store) -> None:
    rec = Recorder()
    sender = OutboxSender(store, smtp_send(free_port()), **rec.kwargs())
    task = asyncio.create_task(sender.run())
    await rec.pending.reach(1)
    started = Stopwatch()
    await sender.stop()
    assert task.done() and not task.cancelled()
    assert started.elapsed() < 1.0


async def test_a_delivered_email_is_not_resent_while_the_store_cannot_delete_it(
    tmp_path: Path, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Store.open(tmp_path)
    enqueue(writer, "only once")
    readonly = Store.open_readonly(tmp_path)  # every write fails: a stand-in for a broken disk
    store_errors = Signal()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "state store error" in record.getMessage():
                store_errors.append(record)

    watch = Watch()
    logging.getLogger("sentinel.notify.outbox").addHandler(watch)
    try:
        rec = Recorder()
        sender = OutboxSender(readonly, smtp_send(smtp.port), **FAST, **rec.kwargs())
        async with running(sender):
            await smtp.handler.received.reach(1)
            await store_errors.reach(3)  # the loop survives and keeps retrying the delete
        assert smtp.handler.subjects == ["only once"]
        assert rec.sent.items == ["only once"]
    finally:
        logging.getLogger("sentinel.notify.outbox").removeHandler(watch)
        readonly.close()
    assert writer.outbox_pending() == 1  # still there: sent again after a restart (at-least-once)
    writer.close()
