"""What an operator meets on day one, as they meet it: the listen address in use, an unreadable
credentials directory, a missing password, `status` and `test-email` outside the service, the
Python the unit can run, `probe` hints and --insecure, --log-level after the command, --help,
the status page address in the start-up log, and scripts/run.sh."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from daemon_proc import SentinelProcess, free_port, wait_until
from sentinel.operator_env import CREDENTIAL_FALLBACK, SERVICE_CREDENTIAL_SOURCE

ROOT = Path(__file__).resolve().parents[2]
EMAIL = (
    '[email]\nfrom = "s@example.org"\nto = ["o@example.org"]\nsmtp_host = "127.0.0.1"\n'
    'smtp_port = 9\nsecurity = "none"\nusername = "alerts"\n'
)


def sentinel(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
    }
    return subprocess.run(
        [*prefix, sys.executable, "-m", "sentinel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
        cwd=cwd,
    )


def error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if " ERROR " in x or x.startswith("sentinel: ")]


# --- defect 2: one line, a documented exit code -------------------------------------------------


@pytest.mark.slow
def test_listen_address_in_use_is_one_line_and_exit_69(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "s.toml"
        config.write_text(
            f'[sentinel]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
        )
        run = sentinel("run", "-c", str(config))
    assert run.returncode == 69
    assert "Traceback" not in run.stderr
    [error] = [x for x in run.stderr.splitlines() if " ERROR " in x]
    assert error.endswith(
        f"listen 127.0.0.1:{port}: address already in use: another program (or another "
        f"sentinel) listens there; stop it (see `ss -ltnp 'sport = :{port}'`) or set "
        "[sentinel] listen to a free port"
    )


def test_unreadable_credentials_directory_is_one_line_and_exit_78(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("pw\n")
    credentials.chmod(0)
    config = tmp_path / "s.toml"
    config.write_text(EMAIL)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # Root reads anything; without these capabilities it is held to the mode bits too.
        capsh = shutil.which("capsh")
        if capsh is None:
            pytest.skip("capsh (libcap2-bin) is needed to drop root's file capabilities")
        prefix = (
            capsh,
            "--drop=cap_dac_override,cap_dac_read_search",
            "--",
            "-c",
            'exec "$@"',
            "--",
        )
    try:
        run = sentinel(
            "check",
            "-c",
            str(config),
            env={"CREDENTIALS_DIRECTORY": str(credentials)},
            prefix=prefix,
        )
    finally:
        credentials.chmod(0o700)
    assert run.returncode == 78, run.stderr
    assert "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line == (
        f"sentinel: {config}: email: password: {credentials}: credentials directory not readable "
        "(Permission denied); run as the service does (systemd LoadCredential=) or set password_file"
    )


def test_missing_service_password_file_names_it_and_exits_78(tmp_path: Path) -> None:
    # What the unit's SetCredential= hands over when /etc/sentinel/smtp-password does not exist.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text(CREDENTIAL_FALLBACK)
    config = tmp_path / "s.toml"
    config.write_text(f'[sentinel]\nstate_dir = "{tmp_path / "state"}"\nlisten = ""\n' + EMAIL)
    run = sentinel("run", "-c", str(config), env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert run.returncode == 78
    [error] = [x for x in run.stderr.splitlines() if " ERROR " in x]
    assert (
        f"{SERVICE_CREDENTIAL_SOURCE}: no such file, and username 'alerts' needs a password"
        in error
    )
    assert "Traceback" not in run.stderr


# --- defect 3: status and test-email outside the service -----------------------------------------


def test_status_without_any_state_says_so_instead_of_never_probed(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[[sites]]\nname = "blog"\nurl = "http://127.0.0.1:9/"\n')
    run = sentinel("status", "-c", str(config), cwd=tmp_path)
    assert run.returncode == 1
    assert "never probed" not in run.stdout
    [line] = run.stderr.splitlines()
    # It asked the daemon first (issue 14), then looked for the store where the service keeps it.
    assert line.startswith("sentinel: no daemon answers at http://127.0.0.1:9798/api/status, ")
    assert "no state store: neither .sentinel/ here nor /var/lib/sentinel/" in line


def test_test_email_without_the_service_credential_says_how_to_run_it(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text(EMAIL)
    run = sentinel("test-email", "-c", str(config))
    assert run.returncode == 78
    [line] = run.stderr.splitlines()
    assert "username 'alerts' but no password here" in line
    assert (
        f"systemd-run --quiet --pipe --wait -p LoadCredential=smtp-password:{SERVICE_CREDENTIAL_SOURCE} "
        f"{sys.executable} -m sentinel test-email -c {config}"
    ) in line
    # `check` stays valid (README's install runs it before the service exists), with a note.
    check = sentinel("check", "-c", str(config))
    assert check.returncode == 0, check.stderr
    assert "email password: none found here" in check.stdout


# --- defect 5: the Python the unit can run --------------------------------------------------------


def test_check_warns_root_about_a_python_under_root_or_home() -> None:
    run = sentinel("check", "-c", str(ROOT / "sites.example.toml"))
    assert run.returncode == 0
    real = os.path.realpath(sys.executable)
    under_home = any(p.startswith(("/root/", "/home/")) for p in (sys.executable, real))
    warned = (
        "  python: warning: this Python" in run.stdout and "ProtectHome=yes hides it" in run.stdout
    )
    assert warned == (os.geteuid() == 0 and under_home), run.stdout


# --- defect 9: first-run friction ------------------------------------------------------------------


def test_probe_of_a_bare_host_suggests_https() -> None:
    run = sentinel("probe", "example.org")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "sentinel: example.org: no scheme and no port: for a web site use https://example.org/, "
        "for a TCP check host:port"
    )


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    cert = trustme.CA().issue_cert("127.0.0.1")  # a CA nobody trusts
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_probe_insecure_accepts_an_untrusted_certificate(
    self_signed_https: str, tmp_path: Path
) -> None:
    strict = sentinel("probe", "--timeout", "5s", self_signed_https)
    assert strict.returncode == 1 and "tls" in strict.stdout
    insecure = sentinel("probe", "--insecure", "--timeout", "5s", self_signed_https)
    assert insecure.returncode == 0, insecure.stdout + insecure.stderr
    assert " up " in insecure.stdout
    config = tmp_path / "s.toml"
    config.write_text(f'[[sites]]\nname = "box"\nurl = "{self_signed_https}"\n')
    configured = sentinel("probe", "-c", str(config), "--insecure")
    assert configured.returncode == 0, configured.stdout + configured.stderr


def test_log_level_works_after_the_subcommand_too() -> None:
    example = str(ROOT / "sites.example.toml")
    after = sentinel("check", "-c", example, "--log-level", "debug")
    assert after.returncode == 0, after.stderr
    before = sentinel("--log-level", "error", "check", "-c", example)
    assert before.returncode == 0, before.stderr


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("run", ["-c", "--log-level"]),
        ("check", ["-c", "--log-level"]),
        ("probe", ["-c", "--log-level", "--site", "--timeout", "--insecure"]),
        ("test-email", ["-c", "--log-level"]),
        ("status", ["-c", "--log-level"]),
    ],
)
def test_every_subcommand_help_lists_all_its_options(command: str, options: list[str]) -> None:
    run = sentinel(command, "--help")
    assert run.returncode == 0
    for option in options:
        assert f" {option}" in run.stdout, (option, run.stdout)


@pytest.mark.slow
def test_start_up_log_prints_the_status_page_address(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    proc = sentinel_proc("").start()
    wait_until(lambda: f"status page http://127.0.0.1:{proc.port}/" in proc.log(), timeout=30)
    assert proc.stop() == 0


@pytest.mark.slow
def test_run_sh_installs_only_what_running_needs_with_progress(tmp_path: Path) -> None:
    wheelhouse = ROOT / ".wheelhouse"
    if not (wheelhouse / ".complete").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("no .wheelhouse under CI=true (.ci/run makes it)")
        pytest.skip("needs .wheelhouse to install offline: run scripts/wheelhouse.sh")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    clone = tmp_path / "clone"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (clone / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name.decode())
    port = free_port()
    config = tmp_path / "sites.toml"
    config.write_text(
        f'[sentinel]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
    )
    out_path = tmp_path / "out.txt"
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PYTHON": "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
    }
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(clone / "scripts" / "run.sh"), str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_until(
                lambda: f"status page http://127.0.0.1:{port}/" in out_path.read_text(),
                timeout=240,
                interval=0.5,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    output = out_path.read_text()
    assert "venv.sh: installing sentinel[uvloop] into .venv" in output
    assert "Successfully installed" in output  # pip's own progress, not silenced
    venv = clone / ".venv"
    assert (venv / "bin" / "sentinel").exists()
    for test_tool in ("pytest", "mypy", "ruff"):
        assert not (venv / "bin" / test_tool).exists(), f"{test_tool} installed by run.sh"
