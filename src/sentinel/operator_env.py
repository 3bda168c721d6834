"""What the systemd service sees, worked out from an operator's shell: where its state is, how to
give a command its SMTP credential, and whether the installed Python survives the unit's
ProtectHome=yes. Used by `sentinel status`, `test-email` and `check`; the decisions are pure
functions (file-system facts are passed in), the shells around them are a few lines.

The service's side is fixed by deploy/systemd/sentinel.service: `StateDirectory=sentinel` (so
/var/lib/sentinel, in fact /var/lib/private/sentinel owned by the dynamic user),
`LoadCredential=smtp-password:/etc/sentinel/smtp-password` and, for when that file does not exist,
`SetCredential=smtp-password:no-password-file` (instead of failing with 243/CREDENTIALS before
sentinel could say anything, in a restart loop).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path

from sentinel.config import EmailConfig
from sentinel.notify.smtp import PASSWORD_ENV, PasswordError

__all__ = [
    "CREDENTIAL_FALLBACK",
    "SERVICE_CREDENTIAL_SOURCE",
    "SERVICE_STATE_DIR",
    "Presence",
    "StateDirError",
    "checked_password",
    "choose_state_dir",
    "home_python_warning",
    "presence",
    "systemd_run_command",
]

SERVICE_STATE_DIR = Path("/var/lib/sentinel")
SERVICE_CREDENTIAL_SOURCE = "/etc/sentinel/smtp-password"
# The unit's SetCredential= default: what the credential holds when the file above is missing.
CREDENTIAL_FALLBACK = "no-password-file"
DB_NAME = "sentinel.db"
PROTECTED_HOMES = ("/root", "/home")


class Presence(Enum):
    PRESENT = "present"
    ABSENT = "absent"
    DENIED = "denied"  # a directory on the way is not readable by this user


class StateDirError(Exception):
    """No state store can be found (or read) from here; the message says what to do."""


def presence(path: Path) -> Presence:
    """Whether `path` exists, telling "not there" from "not allowed to look"."""
    try:
        path.stat()
    except PermissionError:
        return Presence.DENIED
    except OSError:
        return Presence.ABSENT
    return Presence.PRESENT


def choose_state_dir(
    configured: str,
    environ: Mapping[str, str],
    look: Callable[[Path], Presence],
    *,
    config_path: str,
    local: Path = Path(".sentinel"),
    service: Path = SERVICE_STATE_DIR,
) -> Path:
    """The state_dir the daemon uses (config `state_dir`, else $STATE_DIRECTORY as systemd sets
    it), else the one of a local run (./.sentinel) or of the service (/var/lib/sentinel) that
    holds a database. Raises StateDirError when none does or the service's cannot be read."""
    if configured:
        return Path(configured)
    systemd_dirs = environ.get("STATE_DIRECTORY", "")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    if look(local / DB_NAME) is Presence.PRESENT:
        return local
    found = look(service / DB_NAME)
    if found is Presence.PRESENT:
        return service
    if found is Presence.DENIED:
        raise StateDirError(
            f"{service}: permission denied: the service's state is readable by root only; "
            f"run `sudo sentinel status -c {config_path}`"
        )
    raise StateDirError(
        f"no state store: neither {local}/ here nor {service}/ (the service's StateDirectory) "
        f"holds {DB_NAME}; has sentinel run yet? (set [sentinel] state_dir in {config_path} "
        "if it keeps its state elsewhere)"
    )


def systemd_run_command(argv0: str, executable: str, args: list[str]) -> str:
    """The command that runs `sentinel ARGS` with the service's SMTP credential, as the service
    would get it: `systemd-run --pipe --wait -p LoadCredential=... /path/sentinel ARGS`."""
    if os.path.basename(argv0) == "sentinel" and os.path.isabs(argv0):
        program = [argv0]
    else:
        program = [executable, "-m", "sentinel"]
    return shlex.join(
        [
            "systemd-run",
            "--quiet",
            "--pipe",
            "--wait",
            "-p",
            f"LoadCredential=smtp-password:{SERVICE_CREDENTIAL_SOURCE}",
            *program,
            *args,
        ]
    )


def home_python_warning(executable: str, real_executable: str, euid: int) -> str | None:
    """A warning when root runs a Python that lives under /root or /home: the unit's
    ProtectHome=yes hides those, so the service would fail with status 203/EXEC."""
    if euid != 0:
        return None
    for path in (executable, real_executable):
        if any(path == home or path.startswith(home + "/") for home in PROTECTED_HOMES):
            return (
                f"warning: this Python ({real_executable}) lives under /root or /home: the "
                "service's ProtectHome=yes hides it and it would fail with status 203/EXEC; "
                "make the venv with the system Python: /usr/bin/python3 -m venv /opt/sentinel/.venv"
            )
    return None


def checked_password(
    cfg: EmailConfig, password: str | None, environ: Mapping[str, str]
) -> str | None:
    """The password to log in with (None: no login), from what resolve_password() found. Raises
    PasswordError, naming the file and what to do, when [email] username needs a password and
    there is none: logging in with an empty one would only look like a wrong password later."""
    from_credential = not cfg.password_file and not environ.get(PASSWORD_ENV)
    if from_credential and password == CREDENTIAL_FALLBACK:
        if not cfg.username:
            return None  # no login, so no password needed: a missing file is fine
        raise PasswordError(
            f"{SERVICE_CREDENTIAL_SOURCE}: no such file, and username {cfg.username!r} needs a "
            f"password: put it there (install -m 0600 /dev/null {SERVICE_CREDENTIAL_SOURCE}, "
            "then edit it) and start sentinel again"
        )
    if cfg.username and not password:
        if from_credential and environ.get("CREDENTIALS_DIRECTORY"):
            where = (
                f"the credential smtp-password is empty: put the password in "
                f"{SERVICE_CREDENTIAL_SOURCE} (LoadCredential= copies it) and start sentinel again"
            )
        else:
            where = "there is none: set password_file or $SENTINEL_SMTP_PASSWORD"
        raise PasswordError(f"username {cfg.username!r} needs a password but {where}")
    return password
