"""Shared fixtures: a running sentinel subprocess that is always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess


@pytest.fixture
def sentinel_proc(tmp_path: Path) -> Iterator[Callable[..., SentinelProcess]]:
    started: list[SentinelProcess] = []

    def make(config_text: str, **kwargs: object) -> SentinelProcess:
        proc = SentinelProcess(tmp_path, config_text, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
