"""sentinel's median is `statistics.median`, without importing `statistics`."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.median import median

FINITE = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(FINITE, min_size=1, max_size=60))
def test_the_median_is_the_standard_librarys(values: list[float]) -> None:
    assert median(values) == statistics.median(values)
    assert median(iter(values)) == statistics.median(values)


def test_the_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no median"):
        median([])
