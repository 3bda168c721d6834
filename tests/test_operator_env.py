"""What an operator's shell works out about the service (sentinel.operator_env) and the one-line
errors about the listen address (sentinel.listen): pure functions, checked exhaustively."""

from __future__ import annotations

import errno
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import EmailConfig
from sentinel.listen import listen_error, status_page_url
from sentinel.notify.smtp import PasswordError
from sentinel.operator_env import (
    CREDENTIAL_FALLBACK,
    SERVICE_CREDENTIAL_SOURCE,
    SERVICE_STATE_DIR,
    Presence,
    StateDirError,
    checked_password,
    choose_state_dir,
    home_python_warning,
    presence,
    systemd_run_command,
)

LOCAL = Path(".sentinel")
LOCAL_DB = LOCAL / "sentinel.db"
SERVICE_DB = SERVICE_STATE_DIR / "sentinel.db"


def looker(**found: Presence) -> object:
    table = {"local": LOCAL_DB, "service": SERVICE_DB}
    facts = {table[k]: v for k, v in found.items()}
    return lambda path: facts.get(path, Presence.ABSENT)


def choose(configured: str = "", environ: dict[str, str] | None = None, **found: Presence) -> Path:
    return choose_state_dir(
        configured,
        environ or {},
        looker(**found),  # type: ignore[arg-type]
        config_path="/etc/sentinel/sites.toml",
    )


# --- where the state is -------------------------------------------------------------------------


@given(
    configured=st.sampled_from(["", "/srv/state"]),
    state_directory=st.sampled_from(["", "/var/lib/sentinel", "/a:/b"]),
    local=st.sampled_from(list(Presence)),
    service=st.sampled_from(list(Presence)),
)
def test_state_dir_follows_the_daemon_first_then_what_exists(
    configured: str, state_directory: str, local: Presence, service: Presence
) -> None:
    environ = {"STATE_DIRECTORY": state_directory} if state_directory else {}
    try:
        chosen = choose(configured, environ, local=local, service=service)
    except StateDirError as exc:
        assert not configured and not state_directory
        assert local is not Presence.PRESENT and service is not Presence.PRESENT
        assert "\n" not in str(exc)
        return
    if configured:
        assert chosen == Path(configured)
    elif state_directory:
        assert chosen == Path(state_directory.split(":", maxsplit=1)[0])
    elif local is Presence.PRESENT:
        assert chosen == LOCAL
    else:
        assert service is Presence.PRESENT and chosen == SERVICE_STATE_DIR


def test_the_services_state_is_found_from_a_root_shell() -> None:
    assert choose(service=Presence.PRESENT) == SERVICE_STATE_DIR


def test_no_state_anywhere_says_so_instead_of_never_probed() -> None:
    with pytest.raises(StateDirError, match=r"no state store: neither \.sentinel/ here nor"):
        choose()


def test_a_state_only_root_may_read_says_to_use_sudo() -> None:
    with pytest.raises(StateDirError, match=r"permission denied.*sudo sentinel status -c /etc/"):
        choose(service=Presence.DENIED)


def test_presence_tells_absent_from_present(tmp_path: Path) -> None:
    assert presence(tmp_path) is Presence.PRESENT
    assert presence(tmp_path / "nope") is Presence.ABSENT
    assert presence(tmp_path / "file" / "below-a-file") is Presence.ABSENT


# --- the service's credential -------------------------------------------------------------------


def email(**kwargs: str) -> EmailConfig:
    return EmailConfig(sender="s@example.org", recipients=("o@example.org",), **kwargs)  # type: ignore[arg-type]


SERVICE_ENV = {"CREDENTIALS_DIRECTORY": "/run/credentials/sentinel.service"}


def test_missing_credential_file_without_a_login_means_no_password() -> None:
    assert checked_password(email(), CREDENTIAL_FALLBACK, SERVICE_ENV) is None


def test_missing_credential_file_with_a_login_names_the_file_and_what_to_do() -> None:
    with pytest.raises(PasswordError) as caught:
        checked_password(email(username="alerts"), CREDENTIAL_FALLBACK, SERVICE_ENV)
    message = str(caught.value)
    assert message.startswith(f"{SERVICE_CREDENTIAL_SOURCE}: no such file")
    assert "install -m 0600" in message and "\n" not in message


def test_an_empty_credential_with_a_login_is_refused_not_sent() -> None:
    with pytest.raises(PasswordError, match="credential smtp-password is empty"):
        checked_password(email(username="alerts"), "", SERVICE_ENV)
    with pytest.raises(PasswordError, match="set password_file or"):
        checked_password(email(username="alerts"), None, {})


@given(
    username=st.sampled_from(["", "alerts"]),
    password=st.sampled_from([None, "", "pw", CREDENTIAL_FALLBACK]),
    password_file=st.sampled_from(["", "/etc/pw"]),
    under_systemd=st.booleans(),
)
def test_a_login_never_goes_out_with_an_empty_or_marker_password(
    username: str, password: str | None, password_file: str, under_systemd: bool
) -> None:
    cfg = email(username=username, password_file=password_file)
    try:
        result = checked_password(cfg, password, SERVICE_ENV if under_systemd else {})
    except PasswordError as exc:
        assert username and "\n" not in str(exc)
        return
    if username:
        assert result and (result != CREDENTIAL_FALLBACK or password_file)
    else:
        assert result == (
            None if password == CREDENTIAL_FALLBACK and not password_file else password
        )


def test_systemd_run_command_gives_the_service_credential_to_the_installed_command() -> None:
    command = systemd_run_command(
        "/opt/sentinel/.venv/bin/sentinel",
        "/opt/sentinel/.venv/bin/python",
        ["test-email", "-c", "/etc/s t.toml"],
    )
    assert shlex.split(command) == [
        "systemd-run",
        "--quiet",
        "--pipe",
        "--wait",
        "-p",
        f"LoadCredential=smtp-password:{SERVICE_CREDENTIAL_SOURCE}",
        "/opt/sentinel/.venv/bin/sentinel",
        "test-email",
        "-c",
        "/etc/s t.toml",
    ]
    as_module = systemd_run_command("-m", "/usr/bin/python3", ["status"])
    assert shlex.split(as_module)[-4:] == ["/usr/bin/python3", "-m", "sentinel", "status"]


# --- the Python the unit can run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("executable", "real", "euid", "warns"),
    [
        ("/opt/sentinel/.venv/bin/python", "/usr/bin/python3.11", 0, False),
        ("/opt/sentinel/.venv/bin/python", "/root/.pyenv/versions/3.11.7/bin/python3.11", 0, True),
        ("/home/me/venv/bin/python", "/usr/bin/python3.11", 0, True),
        (
            "/opt/sentinel/.venv/bin/python",
            "/root/.pyenv/versions/3.11.7/bin/python3.11",
            1000,
            False,
        ),
        ("/opt/x/bin/python", "/rootfs/usr/bin/python3", 0, False),
        ("/opt/x/bin/python", "/homer/bin/python3", 0, False),
    ],
)
def test_root_is_warned_about_a_python_under_root_or_home(
    executable: str, real: str, euid: int, warns: bool
) -> None:
    warning = home_python_warning(executable, real, euid)
    assert (warning is not None) == warns
    if warning is not None:
        assert "203/EXEC" in warning and "/usr/bin/python3 -m venv" in warning


# --- the listen address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 9798, "http://127.0.0.1:9798/"),
        ("::1", 9798, "http://[::1]:9798/"),
        ("0.0.0.0", 80, "http://127.0.0.1:80/"),
        ("::", 8080, "http://[::1]:8080/"),
        ("monitor.example.org", 9798, "http://monitor.example.org:9798/"),
    ],
)
def test_status_page_url(host: str, port: int, url: str) -> None:
    listen = f"[{host}]:0" if ":" in host else f"{host}:0"
    assert status_page_url(listen, port) == url


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EADDRINUSE, "address already in use"),
        (errno.EADDRNOTAVAIL, "address not available"),
        (errno.EACCES, "permission denied: ports below 1024"),
        (errno.EINVAL, "cannot listen"),
    ],
)
def test_listen_errors_are_one_line_with_what_to_do(code: int, expected: str) -> None:
    message = str(listen_error("127.0.0.1:9798", OSError(code, "whatever")))
    assert message.startswith(f"listen 127.0.0.1:9798: {expected}")
    assert "\n" not in message
