"""Which event loop runs the daemon: uvloop when it is installed (the `uvloop` extra), else the
standard library's. `SENTINEL_EVENT_LOOP=asyncio` forces the standard loop (to rule uvloop out
when debugging); `=uvloop` insists on uvloop and fails if it is missing.

uvloop roughly halves the event loop's share of a probe (bench/README.md: 0.83 -> 0.58 ms CPU per
probe with the lean prober at 300 probes/s); everything sentinel does works on either loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "asyncio", "uvloop")


class EventLoopError(RuntimeError):
    """SENTINEL_EVENT_LOOP names an unknown or unavailable loop."""


def loop_factory(
    environ: Mapping[str, str] = os.environ,
) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(name of the loop, factory for asyncio.Runner; None means the standard one)."""
    wanted = (environ.get("SENTINEL_EVENT_LOOP") or "auto").strip().lower()
    if wanted not in CHOICES:
        raise EventLoopError(
            f"SENTINEL_EVENT_LOOP={wanted!r}: expected one of {', '.join(CHOICES)}"
        )
    if wanted == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise EventLoopError(
                "SENTINEL_EVENT_LOOP=uvloop but uvloop is not installed "
                "(pip install 'sentinel[uvloop]')"
            ) from None
        return "asyncio", None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return "uvloop", factory


def run(coro: Coroutine[Any, Any, T], environ: Mapping[str, str] = os.environ) -> T:
    """`asyncio.run(coro)` on the chosen loop."""
    _, factory = loop_factory(environ)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def running_loop_name() -> str:
    """ "uvloop" or "asyncio", for the start-up log line and sentinel_build_info."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
