"""Bounds for the few tests that check a deadline was kept.

An event loop's timer may fire a little EARLY as a wall clock measures it: uvloop (libuv) rounds a
delay to whole milliseconds and compares against a loop time truncated to the millisecond, so
`call_later(0.3)` can run 1.5 ms before 0.3 s have passed (`assert 0.3 <= 0.29993` failed in CI).
asyncio's own loop allows for its clock's resolution too. `at_least(elapsed, deadline)` is the
lower bound a test may assert; upper bounds are generous (the machine may be busy), never tight.
"""

from __future__ import annotations

# How early a timer may fire: uvloop's 0.5 ms rounding + 1 ms truncation, with a margin.
TIMER_EARLY = 0.002
# "Ended near its deadline, not hung": far above any scheduling delay of a loaded machine.
GENEROUS = 5.0


def at_least(elapsed: float, deadline: float) -> bool:
    """elapsed did not end before `deadline`, allowing for the loop's timer resolution."""
    return elapsed >= deadline - TIMER_EARLY


def near(elapsed: float, deadline: float) -> bool:
    """Kept the deadline: not (meaningfully) before it, and not hung past it."""
    return at_least(elapsed, deadline) and elapsed < deadline + GENEROUS
