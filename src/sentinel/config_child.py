"""The daemon's config file, validated in a short-lived child process.

Validation needs pydantic (`sentinel.parse`), and pydantic stays resident once imported: ~20 MiB
of a daemon that otherwise needs ~35 (bench/README.md, round 7). So the daemon never imports it:
at start and at each reload a child process (this module, run with the daemon's own interpreter
and `sys.path`) reads and validates the file and hands back the resolved `Config`, a tree of
frozen plain dataclasses, pickled, or the one-line errors; it exits, and its memory with it. The
pickle comes from our own child over a pipe: nothing else writes it.

Never worse than validating in-process: if the child cannot be started, crashes, or takes longer
than `CHILD_TIMEOUT`, the file is validated in-process instead (pydantic then stays loaded) and a
warning says why. A deprecation warning the child gives is logged by the daemon, once.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Literal

from sentinel.config import Config, ConfigError, deprecated_once, load_config

log = logging.getLogger("sentinel")

CHILD_TIMEOUT = 60.0  # a file of 10,000 sites is validated in ~2 s here
_STDERR_CHARS = 500  # of a crashed child's stderr, in the warning

# The child's answer: ("ok", Config, warnings) or ("errors", lines, warnings).
Answer = tuple[Literal["ok", "errors"], Config | list[str], list[str]]

_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from sentinel.config_child import child_main; child_main(sys.argv[2])"
)


def _command(path: str | Path) -> list[str]:
    # The parent's own sys.path: the child imports the very same sentinel (a source checkout, a
    # venv, an installed package alike).
    return [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(path)]


def load_config_isolated(path: str | Path) -> Config:
    """`load_config(path)`, done by a child process (at start). Raises ConfigError."""
    try:
        done = subprocess.run(
            _command(path),
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CHILD_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return _in_process(path, f"cannot run it: {exc}")
    return _answer(path, done.returncode, done.stdout, done.stderr)


async def load_config_isolated_async(path: str | Path) -> Config:
    """The same, awaited (at reload: the event loop goes on probing meanwhile)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *_command(path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return _in_process(path, f"cannot run it: {exc}")
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return _in_process(path, f"no answer within {CHILD_TIMEOUT:g}s")
    return _answer(path, proc.returncode, stdout, stderr)


def _answer(path: str | Path, returncode: int | None, stdout: bytes, stderr: bytes) -> Config:
    try:
        if returncode != 0:
            raise ValueError(f"it exited with status {returncode}")
        kind, value, warnings = pickle.loads(stdout)
    except Exception as exc:
        tail = stderr.decode("utf-8", "replace").strip()[-_STDERR_CHARS:]
        return _in_process(path, f"{exc}" + (f": {tail}" if tail else ""))
    for text in warnings:
        deprecated_once(text)
    if kind == "ok" and isinstance(value, Config):
        return value
    if kind == "errors" and isinstance(value, list):
        raise ConfigError([str(line) for line in value])
    return _in_process(path, f"unexpected answer {kind!r}")


def _in_process(path: str | Path, why: str) -> Config:
    log.warning(
        "validating %s in a child process failed (%s); validating it in the daemon instead "
        "(its ~20 MiB of validation code then stay loaded)",
        path,
        why,
    )
    return load_config(path)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def child_main(path: str) -> None:
    """In the child: validate `path`, write the pickled answer to stdout, exit 0."""
    collect = _Collect()
    logger = logging.getLogger("sentinel")
    logger.addHandler(collect)
    logger.propagate = False  # the daemon logs them (once), not this process's stderr
    answer: Answer
    try:
        answer = ("ok", load_config(path), collect.lines)
    except ConfigError as exc:
        answer = ("errors", exc.errors, collect.lines)
    out = io.BytesIO()
    pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.write(out.getvalue())
    sys.stdout.buffer.flush()
