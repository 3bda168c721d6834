"""The tolerance of tests/timing.py covers how early the event loops really fire their timers:
uvloop's often fire before the delay has passed (measured here: 7 of 40 `call_later(0.0203)`
ended after 20.19 ms), so a bound `elapsed >= delay` is flaky and `at_least` is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from timing import TIMER_EARLY, at_least

DELAY = 0.0203  # not a whole millisecond: uvloop rounds it


async def _timer_lengths(count: int) -> list[float]:
    loop = asyncio.get_running_loop()
    lengths = []
    for _ in range(count):
        done = loop.create_future()
        start = time.perf_counter()
        loop.call_later(DELAY, done.set_result, None)
        await done
        lengths.append(time.perf_counter() - start)
    return lengths


def _loops() -> list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]]:
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    try:
        import uvloop
    except ImportError:
        return loops
    return [*loops, ("uvloop", uvloop.new_event_loop)]


@pytest.mark.parametrize(("name", "factory"), _loops(), ids=[n for n, _ in _loops()])
def test_timers_never_fire_earlier_than_the_tolerance(
    name: str, factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        lengths = runner.run(_timer_lengths(40))
    early = [x for x in lengths if not at_least(x, DELAY)]
    assert early == [], f"{name}: fired more than {TIMER_EARLY * 1000} ms early: {early}"
