"""The status page's short durations and their steps (sentinel.durations): pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sentinel.durations import duration, duration_step

# seconds around every boundary the text changes at, and anything up to ten years
seconds = (
    st.sampled_from([0, 59, 60, 61, 3599, 3600, 3660, 86399, 86400, 90000, -5]).flatmap(
        lambda s: st.floats(min_value=s - 1.5, max_value=s + 1.5)
    )
    | st.floats(min_value=-10.0, max_value=10 * 365 * 86400.0)
    | st.integers(min_value=0, max_value=10 * 365 * 86400)
)


@given(seconds, seconds)
def test_two_durations_have_the_same_step_exactly_when_they_read_the_same(
    a: float, b: float
) -> None:
    assert (duration_step(a) == duration_step(b)) == (duration(a) == duration(b))
    assert duration_step(a) >= 0


def test_the_texts() -> None:
    assert [duration(s) for s in (-3, 0, 45.9, 60, 754, 3600, 11100, 86400, 187200)] == [
        "0 s",
        "0 s",
        "45 s",
        "1 min",
        "12 min",
        "1 h",
        "3 h 5 min",
        "1 d",
        "2 d 4 h",
    ]
