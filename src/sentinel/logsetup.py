"""Log output: one line per event; journald priority prefixes under systemd, else ISO timestamps.

`configure_logging()` installs one handler (on the root logger, so warnings of aiohttp, asyncio and
Python's `warnings` get the same treatment) and sets the level of the "sentinel" logger hierarchy.
`kv()` renders key=value fields (`site=blog reason=timeout`) so `journalctl -u sentinel | grep
site=blog` works. Remote text (HTTP bodies, SMTP replies, exception messages) ends up in log
messages, so every control character, CR and LF included, is escaped: no one can forge a log line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from sentinel.sanitize import escape_controls, needs_escaping

__all__ = [
    "LEVELS",
    "JournalFormatter",
    "TextFormatter",
    "configure_logging",
    "defuse",
    "kv",
    "stream_is_journal",
    "unconfigure_logging",
]

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Libraries whose chatter is not wanted at our level (aiohttp.access logs every /metrics scrape).
_QUIET_LOGGERS: Mapping[str, int] = {"aiohttp.access": logging.WARNING}

# A kv value needs quotes when it is empty or holds whitespace, quotes, '=' or a backslash.
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


def defuse(text: str) -> str:
    """`text` with CR, LF and every other control character escaped (\\n, \\r, \\x1b, ...): it
    cannot start a new log line or move the cursor. Backslashes are left alone."""
    return escape_controls(text)


def kv(**fields: object) -> str:
    """`site=blog reason=timeout msg="connection timed out"`: fields in the order given; values
    with spaces, quotes, '=' or backslashes are double-quoted with \\" and \\\\ escaped; control
    characters are escaped so the result is always one line. None renders as an empty string."""
    parts: list[str] = []
    for key, value in fields.items():
        text = "" if value is None else str(value)
        if not text or _NEEDS_QUOTES.search(text) or needs_escaping(text):
            text = '"' + defuse(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _exception_lines(formatter: logging.Formatter, record: logging.LogRecord) -> list[str]:
    """The traceback and stack lines of `record`, each defused, without the final newline."""
    text = ""
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
        text = record.exc_text
    elif record.exc_text:
        text = record.exc_text
    if record.stack_info:
        text = f"{text}\n{formatter.formatStack(record.stack_info)}" if text else record.stack_info
    return [defuse(line) for line in text.splitlines()] if text else []


class TextFormatter(logging.Formatter):
    """`2026-11-26T23:10:05Z WARNING sentinel.scheduler message`, UTC. Traceback lines follow,
    each indented with "  | " so they can never be mistaken for a record of their own."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        head = f"{stamp} {record.levelname} {record.name} {defuse(record.getMessage())}"
        extra = _exception_lines(self, record)
        return "\n".join([head, *(f"  | {line}" for line in extra)])


def _journal_priority(levelno: int) -> int:
    """sd-daemon(3) prefixes: <3> error (and critical), <4> warning, <6> info, <7> debug."""
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """`<6>message`: journald parses the priority prefix and adds the timestamp itself. Traceback
    lines become entries of the same priority, indented with "  | "."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_journal_priority(record.levelno)}>"
        head = prefix + defuse(record.getMessage())
        extra = _exception_lines(self, record)
        return "\n".join([head, *(f"{prefix}  | {line}" for line in extra)])


def stream_is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when $JOURNAL_STREAM ("DEVICE:INODE", systemd.exec(5)) names the file `stream` writes
    to, i.e. systemd connected it to journald. Any doubt (no fd, bad variable) means False."""
    value = environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        expected = (int(device), int(inode))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        # io.UnsupportedOperation (no fileno, e.g. StringIO) is both an OSError and a ValueError.
        return False
    return (st.st_dev, st.st_ino) == expected


class _SentinelHandler(logging.StreamHandler[TextIO]):
    """Marks the one handler configure_logging() owns, so calling it again replaces it."""


def unconfigure_logging() -> None:
    """Undo configure_logging(): remove its handler, reset the "sentinel" level, stop capturing
    Python warnings. Handy in tests; harmless if nothing was configured."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _SentinelHandler):
            root.removeHandler(handler)
            handler.close()
    logging.getLogger("sentinel").setLevel(logging.NOTSET)
    logging.captureWarnings(False)


def configure_logging(
    level: str = "info",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Log the "sentinel" hierarchy at `level` (debug, info, warning, error) to `stream` (default
    stderr), journald-style when $JOURNAL_STREAM matches it. Other libraries log warnings and
    above through the same handler. Calling it again replaces the previous configuration.

    Raises ValueError for an unknown level."""
    levelno = LEVELS.get(level.strip().lower())
    if levelno is None:
        raise ValueError(f"invalid log level {level!r}: choose one of {', '.join(LEVELS)}")
    out = stream if stream is not None else sys.stderr
    env = environ if environ is not None else os.environ

    formatter: logging.Formatter = (
        JournalFormatter() if stream_is_journal(out, env) else TextFormatter()
    )
    handler = _SentinelHandler(out)
    handler.setFormatter(formatter)

    unconfigure_logging()
    root = logging.getLogger()
    root.addHandler(handler)
    # The root logger keeps its level (WARNING unless someone changed it): third-party libraries
    # log warnings and errors only, and asyncio's "Task exception was never retrieved" (an ERROR)
    # reaches the journal with the right priority. Only our own hierarchy follows `level`.
    logging.getLogger("sentinel").setLevel(levelno)
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet_level)
    logging.captureWarnings(True)
