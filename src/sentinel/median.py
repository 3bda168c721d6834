"""The median of some numbers, as `statistics.median` gives it. Pure; a leaf module.

Written here because importing `statistics` also loads `fractions`, `decimal`, `numbers` and
`random` (~0.3 MiB a daemon keeps for good) for a sort and a middle element.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["median"]


def median(values: Iterable[float]) -> float:
    """The middle value of `values` once sorted, or the mean of the two middle ones when there
    is an even number of them. Raises ValueError when there are none."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("no median of no values")
    half = n // 2
    if n % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2
