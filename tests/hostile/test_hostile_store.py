"""The state store under attack: a state_dir that cannot be used (a clear one-line error, exit 78),
a corrupted database (moved aside loudly, monitoring goes on) and a disk that fills up while the
daemon runs (probing goes on, the failure is logged and counted, alerts still go out)."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from cli_runner import run_many

from daemon_proc import SentinelProcess, wait_until
from sentinel.config import EmailConfig
from sentinel.monitor import SiteState, Status
from sentinel.notify.outbox import OutboxSender
from sentinel.notify.smtp import SmtpChannel
from sentinel.store import DB_NAME, Outgoing, Store, StoreError
from smtp_server import SmtpServer
from targets import target_server

# ------------------------------------------------------------------ helpers: real mounts


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A real tmpfs at `path` (we run as root in a container); skips the test where mounting is
    not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(options)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem says ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)
    return filler


def check_state_dir_errors(tmp: Path, cases: dict[str, tuple[Path, str]]) -> None:
    """`sentinel run` with each state_dir: exit 78 and exactly one ERROR line naming the
    directory and the problem."""
    configs = []
    for n, (state_dir, _) in enumerate(cases.values()):
        path = tmp / f"sites-{n}.toml"
        path.write_text(
            f'[sentinel]\nlisten = ""\nstate_dir = "{state_dir}"\n'
            '[[sites]]\nname = "a"\nurl = "http://127.0.0.1:9/"\n'
        )
        configs.append(path)
    runs = run_many([["run", "-c", str(c)] for c in configs], tmp, timeout=10)
    for (name, (state_dir, fragment)), run in zip(cases.items(), runs, strict=True):
        assert run.returncode == 78, (name, run)
        lines = run.stderr.splitlines()
        assert len(lines) == 1, (name, lines)
        assert " ERROR " in lines[0] and str(state_dir) in lines[0], (name, lines)
        assert fragment in lines[0], (name, lines)


# ------------------------------------------------------------------ unusable state_dir


def test_unusable_state_dir_stops_sentinel_run_with_one_clear_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a file, not a directory")
    db_is_dir = tmp_path / "db-is-a-dir"
    (db_is_dir / DB_NAME).mkdir(parents=True)
    check_state_dir_errors(
        tmp_path,
        {
            "under a file": (afile / "state", "cannot create state directory"),
            "a file": (afile, "is not a directory"),
            "database is a directory": (db_is_dir, "cannot open state store"),
        },
    )


def test_read_only_state_dir_stops_sentinel_run_with_one_clear_line(tmp_path: Path) -> None:
    """Permission bits do not stop root; a read-only filesystem does."""
    with tmpfs(tmp_path / "ro", "ro", "size=64k") as ro:
        check_state_dir_errors(
            tmp_path,
            {
                "read-only filesystem": (ro, "is not writable"),
                "under a read-only filesystem": (ro / "sub", "Read-only file system"),
            },
        )


# ------------------------------------------------------------------ corrupted database


def damage_pages(db: Path) -> bytes:
    """A real database with its b-tree pages smashed (the header page survives)."""
    with Store.open(db.parent) as store:
        for i in range(100):
            store.save_state(SiteState(site=f"old-{i:03d}", incident_id="x" * 200))
    data = bytearray(db.read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset : offset + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.slow  # starts the daemon
def test_corrupted_database_is_moved_aside_loudly_and_monitoring_goes_on(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    with target_server({"/fail": 500}) as target:
        proc = sentinel_proc(
            '[defaults]\ninterval = "1s"\ntimeout = "500ms"\nfailure_threshold = 1\n'
            f'[[sites]]\nname = "shop"\nurl = "{target.url("/fail")}"\n'
        )
        proc.state_dir.mkdir()
        broken = damage_pages(proc.state_dir / DB_NAME)
        proc.start()
        wait_until(lambda: proc.status()["shop"]["status"] == "down", timeout=5)
        [aside] = proc.state_dir.glob(DB_NAME + ".corrupt-*")
        assert aside.read_bytes() == broken
        loud = [line for line in proc.log().splitlines() if "was corrupted" in line]
        assert len(loud) == 1 and " ERROR " in loud[0] and aside.name in loud[0], loud
        # The fresh store works: the incident is persisted where `sentinel status` reads it.
        with Store.open_readonly(proc.state_dir) as store:
            wait_until(lambda: "shop" in store.load_states(), timeout=5)
            assert store.load_states()["shop"].status is Status.DOWN
        assert proc.stop() == 0


# ------------------------------------------------------------------ a disk that fills up


@dataclass
class FullDisk:
    """What one daemon run saw: the disk fills while the site is up, the site goes DOWN on the
    full disk, space comes back, the site recovers."""

    store_errors: float
    failures_while_full: tuple[float, float]
    log: str
    down_email_while_full: EmailMessage | None
    subjects_at_end: list[str]
    store_errors_after_space_is_back: tuple[float, float]


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullDisk]:
    tmp = tmp_path_factory.mktemp("full-disk")
    with (
        target_server({"/shop": 200}) as target,
        SmtpServer() as smtp,
        tmpfs(tmp / "state", "size=512k") as state,
    ):
        proc = SentinelProcess(
            tmp,
            '[defaults]\ninterval = "1s"\ntimeout = "500ms"\nfailure_threshold = 1\n'
            '[email]\nfrom = "s@example.org"\nto = ["o@example.org"]\nsmtp_host = "127.0.0.1"\n'
            f'smtp_port = {smtp.port}\nsecurity = "none"\ntimeout = "20s"\n'
            f'[[sites]]\nname = "shop"\nurl = "{target.url("/shop")}"\n',
        )
        try:
            proc.start()

            def metric(name: str, **labels: str) -> float:
                return proc.metric(name, **labels) or 0

            wait_until(lambda: metric("sentinel_site_up", site="shop") == 1, timeout=5)
            filler = fill(state)
            target.routes["/shop"] = 500
            wait_until(lambda: metric("sentinel_store_errors_total") >= 1, timeout=5)
            failing = metric("sentinel_probes_total", site="shop", result="failure")
            wait_until(
                lambda: (
                    metric("sentinel_probes_total", site="shop", result="failure") >= failing + 2
                ),
                timeout=5,
            )
            failures = (failing, metric("sentinel_probes_total", site="shop", result="failure"))
            try:
                [down] = smtp.wait_for_sync(1, timeout=30)
                down_email: EmailMessage | None = down.message
            except TimeoutError:
                down_email = None
            store_errors = metric("sentinel_store_errors_total")
            filler.unlink()  # space again
            target.routes["/shop"] = 200
            wait_until(lambda: metric("sentinel_site_up", site="shop") == 1, timeout=5)
            recovered_at = metric("sentinel_store_errors_total")
            wait_until(lambda: any("RECOVERED" in str(m["Subject"]) for m in smtp.messages), 5)
            after = metric("sentinel_store_errors_total")
            yield FullDisk(
                store_errors=store_errors,
                failures_while_full=failures,
                log=proc.log(),
                down_email_while_full=down_email,
                subjects_at_end=[str(m["Subject"]) for m in smtp.messages],
                store_errors_after_space_is_back=(recovered_at, after),
            )
            assert proc.stop() == 0
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()


@pytest.mark.slow  # starts the daemon
def test_full_disk_is_logged_and_counted_while_probing_goes_on(full_disk: FullDisk) -> None:
    assert full_disk.store_errors >= 1
    first, later = full_disk.failures_while_full
    assert later >= first + 1  # probes kept running on the full disk
    failed_writes = [line for line in full_disk.log.splitlines() if "store write failed" in line]
    assert failed_writes and all(" ERROR " in line for line in failed_writes)
    assert "database or disk is full" in failed_writes[0]
    assert "Traceback" not in full_disk.log
    # Space is back: the store works again (the recovery was saved and its email went out).
    before, after = full_disk.store_errors_after_space_is_back
    assert after == before
    assert any(s.startswith("[sentinel] RECOVERED: shop") for s in full_disk.subjects_at_end)


@pytest.mark.slow  # starts the daemon
def test_full_disk_still_sends_the_down_alert(full_disk: FullDisk) -> None:
    assert full_disk.down_email_while_full is not None
    assert str(full_disk.down_email_while_full["Subject"]).startswith("[sentinel] DOWN: shop")


# ------------------------------------------------------------------ the outbox on a full disk


class StoreErrors(logging.Handler):
    """Counts the sender's "state store error" log records (one per failed round)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "state store error" in record.getMessage():
            self.count += 1


def message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "s@example.org"
    msg["To"] = "o@example.org"
    msg["Subject"] = subject
    msg.set_content(subject)
    return msg.as_bytes(policy=email.policy.SMTP)


async def test_outbox_delivers_stored_and_unstored_emails_once_on_a_full_disk(
    tmp_path: Path,
) -> None:
    """The sender side of a full disk, with a real store on a real full tmpfs and a real SMTP
    server: a stored email goes out once even though it cannot be deleted afterwards, and an
    email the store could not take at all (enqueue_unstored) goes out from memory after it."""
    with tmpfs(tmp_path / "state", "size=256k") as state, SmtpServer() as smtp:
        store = Store.open(state)
        now = time.time()
        store.save_state(SiteState(site="shop"), [Outgoing("down", "shop", message("stored"), now)])
        fill(state)
        with pytest.raises(StoreError, match="full"):
            store.save_state(
                SiteState(site="shop", status=Status.UP),
                [Outgoing("recovered", "shop", message("x"), now)],
            )
        cfg = EmailConfig(
            sender="s@example.org", recipients=("o@example.org",), smtp_host="127.0.0.1",
            smtp_port=smtp.port, security="none", timeout=2.0,
        )  # fmt: skip
        sent: list[str] = []
        loops = StoreErrors()
        logging.getLogger("sentinel.notify.outbox").addHandler(loops)
        sender = OutboxSender(
            store, SmtpChannel(cfg, None).send, on_sent=sent.append, backoff_first=0.05,
            backoff_cap=0.2,
        )  # fmt: skip
        task = asyncio.create_task(sender.run())
        try:
            sender.enqueue_unstored([Outgoing("recovered", "shop", message("unstored"), now)])
            await smtp.wait_for(2, timeout=30)
            # The sender goes round several times, failing to delete the stored email each time,
            # and never sends it again.
            seen = loops.count
            deadline = time.monotonic() + 5
            while loops.count < seen + 3:
                assert time.monotonic() < deadline, "the sender stopped retrying the delete"
                await asyncio.sleep(0.02)
            assert [str(m.message["Subject"]) for m in smtp.received()] == ["stored", "unstored"]
            assert sent == ["down", "recovered"]
            assert store.outbox_pending() == 1  # still stored: sent again after a restart
        finally:
            logging.getLogger("sentinel.notify.outbox").removeHandler(loops)
            await sender.stop(grace=1.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store.close()
