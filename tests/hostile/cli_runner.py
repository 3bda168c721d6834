"""Runs many `sentinel` commands fast: one interpreter imports `sentinel.cli` once, then forks a
child per command. Each child runs the real `main(argv)` with its stdout and stderr in files and
exits with the return code, exactly as the console script does (`sys.exit(main())`); an exception
that escapes `main` prints its traceback to stderr, as Python would. Starting one interpreter per
command would cost ~0.4 s each; this costs a few milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_DRIVER = r"""
import json, os, signal, sys, traceback
from sentinel.cli import main
from sentinel.config import parse_config
import sentinel.daemon
import sentinel.notify.smtp

# Build pydantic's validators once, here, rather than again in every child.
parse_config({"sites": [{"name": "a", "url": "http://x/"}, {"name": "b", "tcp": "x:1"}],
              "email": {"from": "a@b", "to": ["c@d"]}})
jobs = json.loads(sys.stdin.read())
codes = []
for job in jobs:
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(job["timeout"])  # a command that should have failed but runs on
            os.environ.update(job["env"])
            out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1)
            os.dup2(err, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            try:
                result = main(job["argv"])
                code = 0 if result is None else int(result)
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
print(json.dumps(codes))
"""


@dataclass(frozen=True)
class CliRun:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run_many(
    commands: Sequence[Sequence[str]],
    workdir: Path,
    env: Sequence[Mapping[str, str]] | None = None,
    timeout: int = 20,
) -> list[CliRun]:
    """Run each argv (without the leading "sentinel") through `sentinel.cli.main` in its own
    forked process; `env[i]` is added to the environment of command i. A command still running
    after `timeout` seconds is killed (SIGALRM: return code -14)."""
    batch = uuid.uuid4().hex[:8]  # several batches may share a workdir
    outs = [workdir / f"cli-{batch}-{n}.out" for n in range(len(commands))]
    errs = [workdir / f"cli-{batch}-{n}.err" for n in range(len(commands))]
    jobs = [
        {
            "argv": list(argv),
            "out": str(outs[n]),
            "err": str(errs[n]),
            "env": dict(env[n]) if env is not None else {},
            "timeout": timeout,
        }
        for n, argv in enumerate(commands)
    ]
    driver = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=60 + timeout,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "SENTINEL_SMTP_PASSWORD"},
    )
    codes: list[int] = json.loads(driver.stdout)
    return [
        CliRun(
            argv=tuple(argv),
            returncode=code,
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )
        for argv, code, out, err in zip(commands, codes, outs, errs, strict=True)
    ]
