"""Security: the HTTP server is loopback-only by default; hostile text from a target cannot break
an email header, the JSON API, the status page or a log line; site names with control characters
are refused; the SMTP password never reaches a log line or the CLI's output."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import sys
import unicodedata
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_runner import CliRun, run_many
from hostile_server import Hostile
from raw_smtp import AuthEchoer

from daemon_proc import SentinelProcess, wait_until
from sentinel.config import DEFAULT_LISTEN, load_config, parse_config
from smtp_server import SmtpServer

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ ")
UNSAFE = ("Cc", "Cf", "Zl", "Zp")


def assert_safe_text(text: str) -> None:
    bad = [ch for ch in text if unicodedata.category(ch) in UNSAFE]
    assert not bad, (bad, text)


def assert_every_log_line_is_a_record(log: str) -> None:
    for line in log.splitlines():
        assert LOG_LINE.match(line), repr(line)


# ------------------------------------------------------------------ loopback by default


def test_listen_defaults_to_loopback(tmp_path: Path) -> None:
    assert DEFAULT_LISTEN == "127.0.0.1:9798"
    assert parse_config({}).listen == DEFAULT_LISTEN
    path = tmp_path / "sites.toml"
    path.write_text('[[sites]]\nname = "a"\nurl = "http://127.0.0.1:9/"\n')
    assert load_config(path).listen == DEFAULT_LISTEN


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A = LISTEN
                    continue
                hex_addr, hex_port = local.split(":")
                raw = bytes.fromhex(hex_addr)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def local_non_loopback_address() -> str | None:
    """This host's own address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
        except OSError:
            return None
        address = str(udp.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture
def default_port_free() -> None:
    port = int(DEFAULT_LISTEN.rsplit(":", 1)[1])
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon does
            try:
                probe.bind((host, port))
            except OSError:
                pytest.skip(f"port {port} is in use on this machine")


@pytest.mark.slow  # starts the daemon
@pytest.mark.usefixtures("default_port_free")
def test_daemon_without_listen_serves_only_on_loopback(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(f'[sentinel]\nstate_dir = "{tmp_path / "state"}"\n')
    log = (tmp_path / "sentinel.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentinel", "run", "-c", str(config)], stdout=log, stderr=log
    )
    log.close()
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "sentinel.log").read_text()
            with urllib.request.urlopen(f"http://{DEFAULT_LISTEN}/healthz", timeout=2) as r:
                return bool(r.status == 200)

        wait_until(healthy, timeout=10)
        assert listening_addresses(proc.pid) == [("127.0.0.1", 9798)]
        address = local_non_loopback_address()
        if address is not None:  # the same port on this host's other address: nobody there
            with (
                pytest.raises(ConnectionRefusedError),
                socket.create_connection((address, 9798), 2),
            ):
                pass
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# ------------------------------------------------------------------ hostile text from targets


@pytest.fixture(scope="module")
def hostile_text_daemon(
    hostile: Hostile, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SentinelProcess, SmtpServer]]:
    sites = {
        "reason": (hostile.plain.url("/hostile-reason"), ""),
        "not-http": (hostile.plain.url("/hostile-garbage"), ""),
        "body": (hostile.plain.url("/hostile-body"), 'body_contains = "needle"\n'),
        "tls": (hostile.tls_self_signed.url("/ok"), ""),
    }
    with SmtpServer() as smtp:
        text = (
            '[defaults]\ninterval = "1s"\ntimeout = "500ms"\nfailure_threshold = 1\n'
            '[email]\nfrom = "s@example.org"\nto = ["o@example.org"]\nsmtp_host = "127.0.0.1"\n'
            f'smtp_port = {smtp.port}\nsecurity = "none"\ntimeout = "20s"\n'
        )
        for name, (url, extra) in sites.items():
            text += f'[[sites]]\nname = "{name}"\nurl = "{url}"\n{extra}'
        proc = SentinelProcess(tmp_path_factory.mktemp("hostile-text"), text)
        try:
            proc.start()
            smtp.wait_for_sync(len(sites), timeout=10)
            yield proc, smtp
            assert proc.stop() == 0
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()


@pytest.mark.slow  # starts the daemon
def test_hostile_text_never_breaks_email_headers(
    hostile_text_daemon: tuple[SentinelProcess, SmtpServer],
) -> None:
    _, smtp = hostile_text_daemon
    mails = smtp.received()
    assert {str(m.message["Subject"]).split(" — ")[0] for m in mails} == {
        f"[sentinel] DOWN: {name}" for name in ("reason", "not-http", "body", "tls")
    }
    for mail in mails:
        subject = mail.message.get_all("Subject")
        assert subject is not None and len(subject) == 1
        assert_safe_text(str(subject[0]))
        assert mail.message.get_all("From") == ["s@example.org"]
        assert "X-Injected" not in mail.message and mail.message.get_all("To") == ["o@example.org"]
        head = mail.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")  # headers are pure ASCII
        for line in head.split("\r\n"):  # every line is a header or a folded continuation
            assert re.match(r"^([A-Za-z-]+: |[ \t])", line), line
        assert not re.search(r"(?im)^(subject: pwned|from: evil|x-injected)", head)
        body = mail.message.get_body(("plain",))
        assert body is not None and "\x1b" not in body.get_content()


@pytest.mark.slow  # starts the daemon
def test_hostile_text_never_breaks_the_json_api_status_page_or_log(
    hostile_text_daemon: tuple[SentinelProcess, SmtpServer],
) -> None:
    proc, _ = hostile_text_daemon
    data = json.loads(proc.get("/api/status"))  # valid JSON, whatever the targets said
    for entry in data["sites"]:
        assert entry["last"] is not None, entry
        assert_safe_text(entry["last"]["message"])
    reason = next(e for e in data["sites"] if e["site"] == "reason")["last"]["message"]
    assert reason.startswith("HTTP 503 <script>")  # shown, but as text:
    page = proc.get("/").decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Traceback" not in proc.log()
    assert_every_log_line_is_a_record(proc.log())  # no forged record, no broken line


# ------------------------------------------------------------------ site names

C1_AND_SEPARATORS = (
    "config.py _SITE_NAME_RE refuses only C0 controls and DEL: C1 controls (U+0080-U+009F, e.g. "
    "NEL, CSI) and U+2028/U+2029 pass and reach terminals via `sentinel check`/`probe`/`status`; "
    "refuse them too (see the report)"
)


NAMES = [
    pytest.param("bell\x07", id="BEL"),
    pytest.param("new\nline", id="LF"),
    pytest.param("carriage\rreturn", id="CR"),
    pytest.param("esc\x1b[31mred", id="ESC"),
    pytest.param("del\x7f", id="DEL"),
    pytest.param("tab\there", id="TAB"),
    pytest.param("nel\x85", id="NEL"),
    pytest.param("csi\x9b2J", id="CSI"),
    pytest.param("ls\u2028", id="LS"),
]


@pytest.fixture(scope="module")
def checked_names(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliRun]:
    """`sentinel check` of a file with each name, all forked from one interpreter."""
    tmp = tmp_path_factory.mktemp("names")
    names = [str(p.values[0]) for p in NAMES]
    paths = []
    for n, name in enumerate(names):
        path = tmp / f"name-{n}.toml"
        path.write_text(f'[[sites]]\nname = {json.dumps(name)}\nurl = "http://x/"\n')
        paths.append(path)
    runs = run_many([["check", "-c", str(p)] for p in paths], tmp)
    return dict(zip(names, runs, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_site_name_with_control_characters_is_refused(
    name: str, checked_names: dict[str, CliRun]
) -> None:
    run = checked_names[name]
    assert run.returncode == 78, run
    assert "name: must be 1-100 characters without control characters" in run.stderr
    assert_safe_text(run.stderr.replace("\n", ""))  # the error does not print the name raw


# ------------------------------------------------------------------ the SMTP password

PASSWORD = "Zq7!distinctive-Pa55w0rd"
USER = "sentinel-user"


def secret_forms() -> list[str]:
    raw = PASSWORD.encode()
    return [
        PASSWORD,
        base64.b64encode(raw).decode(),  # AUTH LOGIN
        base64.b64encode(b"\0" + USER.encode() + b"\0" + raw).decode(),  # AUTH PLAIN
    ]


def email_section(port: int) -> str:
    return (
        '[email]\nfrom = "s@example.org"\nto = ["o@example.org"]\nsmtp_host = "127.0.0.1"\n'
        f'smtp_port = {port}\nsecurity = "none"\nusername = "{USER}"\ntimeout = "20s"\n'
    )


@pytest.mark.slow  # starts the daemon
def test_smtp_password_never_appears_in_logs_or_cli_output(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    with AuthEchoer() as echo, AuthEchoer(mechanisms=b"LOGIN") as echo_login:
        proc = sentinel_proc(
            '[defaults]\ninterval = "1s"\ntimeout = "500ms"\nfailure_threshold = 1\n'
            + email_section(echo.port)
            + '[[sites]]\nname = "down"\nurl = "http://127.0.0.1:9/"\n',
            env={"SENTINEL_SMTP_PASSWORD": PASSWORD},
        ).start()
        wait_until(lambda: (proc.metric("sentinel_email_failures_total") or 0) >= 1, timeout=10)
        assert echo.auth_attempts >= 1
        configs = []
        for n, port in enumerate((echo.port, echo_login.port)):
            path = tmp_path / f"mail-{n}.toml"
            path.write_text(email_section(port))
            configs.append(path)
        env = {"SENTINEL_SMTP_PASSWORD": PASSWORD}
        runs = run_many(
            [
                ["check", "-c", str(configs[0])],
                ["test-email", "-c", str(configs[0])],
                ["test-email", "-c", str(configs[1])],
            ],
            tmp_path,
            env=[env, env, env],
        )
        assert echo_login.auth_attempts == 1
        assert proc.stop() == 0
    log = proc.log()
    assert "authentication failed: 535" in log  # the server's refusal is reported...
    check, plain, login = runs
    assert check.returncode == 0 and "valid" in check.stdout
    for run in (plain, login):
        assert run.returncode == 1 and "authentication failed: 535" in run.stderr, run
    for text in (log, check.stdout, check.stderr, *(r.stderr + r.stdout for r in (plain, login))):
        for secret in secret_forms():  # ...without the password, in any encoding
            assert secret not in text
    assert_every_log_line_is_a_record(log)
