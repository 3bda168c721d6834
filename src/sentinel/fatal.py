"""Errors that reach stderr outside the logging handler: the one-line errors of the command line
(a config error at start, a bad argument) and tracebacks nothing caught, also those raised before
logging is set up (an import failing, a bug in argument handling).

Under systemd (stderr is the journal, `logsetup.stream_is_journal`) every such line carries a
priority prefix: `<3>` (err) for an error line, `<2>` (crit) for each line of an uncaught
traceback. Without a prefix journald files a line at info, and `journalctl -p warning` would not
show why the service died. Elsewhere the lines are plain. Only the standard library and logsetup
are imported, so this works before anything else of sentinel is.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

from sentinel.logsetup import defuse, stream_is_journal

__all__ = ["error_lines", "install_excepthooks", "report", "traceback_lines"]

ERR = 3
CRIT = 2


def error_lines(lines: list[str], *, journal: bool, priority: int = ERR) -> str:
    """`sentinel: <line>` per line (control characters escaped: one line stays one line), each
    with `<priority>` in front for the journal; ends with a newline."""
    prefix = f"<{priority}>" if journal else ""
    return "".join(f"{prefix}sentinel: {defuse(line)}\n" for line in lines)


def traceback_lines(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    *,
    journal: bool,
) -> str:
    """A traceback as `sentinel: internal error: ...` and its indented lines, every one at crit
    priority for the journal (a multi-line entry would be split and the rest filed at info)."""
    prefix = f"<{CRIT}>" if journal else ""
    head = f"{prefix}sentinel: internal error: {defuse(f'{exc_type.__name__}: {exc}')}\n"
    body = [
        f"{prefix}  | {defuse(line)}\n"
        for chunk in traceback.format_exception(exc_type, exc, tb)
        for line in chunk.rstrip("\n").split("\n")
    ]
    return head + "".join(body)


def _journal(stream: TextIO, environ: Mapping[str, str] | None) -> bool:
    return stream_is_journal(stream, os.environ if environ is None else environ)


def report(
    *lines: str, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Print each line as `sentinel: <line>` on stderr, at err priority under systemd."""
    out = sys.stderr if stream is None else stream
    out.write(error_lines(list(lines), journal=_journal(out, environ)))
    out.flush()


def install_excepthooks(environ: Mapping[str, str] | None = None) -> None:
    """Route uncaught exceptions (main thread, other threads, "Exception ignored in ...") through
    traceback_lines(), so each line of them reaches the journal at crit priority."""

    def write(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        out = sys.stderr
        if out is None:  # pragma: no cover (pythonw-like environments)
            return
        try:
            out.write(traceback_lines(exc_type, exc, tb, journal=_journal(out, environ)))
            out.flush()
        except Exception:  # a broken stderr: fall back to Python's own output
            sys.__excepthook__(exc_type, exc, tb)

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        write(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not issubclass(args.exc_type, SystemExit):
            write(args.exc_type, args.exc_value, args.exc_traceback)

    def unraisable_hook(args: sys.UnraisableHookArgs) -> None:
        if args.exc_value is not None:
            write(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
