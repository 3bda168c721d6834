"""The running counts behind systemd's STATUS line agree with walking every site, and reading
them walks nothing (a start with N sites changing once used to cost O(N^2))."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.monitor import SiteState, Status
from sentinel.site_states import SiteStates, summary_line

NAMES = st.sampled_from([f"site-{i}" for i in range(6)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), NAMES, st.sampled_from(list(Status))),
        st.tuples(st.just("pop"), NAMES, st.none()),
    ),
    max_size=60,
)


def walked_summary(states: dict[str, SiteState]) -> str:
    """The old way: walk every site."""
    down = sum(1 for s in states.values() if s.status is Status.DOWN)
    return f"{len(states)} sites, {down} down"


@given(OPERATIONS)
def test_counts_match_a_walk_after_any_sequence_of_changes(
    operations: list[tuple[str, str, Status | None]],
) -> None:
    states = SiteStates()
    reference: dict[str, SiteState] = {}
    for op, name, status in operations:
        if op == "set":
            assert status is not None
            states[name] = reference[name] = SiteState(site=name, status=status)
        else:
            states.pop(name, None)
            reference.pop(name, None)
        for each in Status:
            assert states.count(each) == sum(1 for s in reference.values() if s.status is each)
        assert summary_line(states) == walked_summary(reference)
        assert dict(states) == reference


class NoWalking(SiteStates):
    """Fails the test if anything iterates over the sites."""

    def __iter__(self) -> Iterator[str]:
        pytest.fail("summary_line walked every site")


def test_summary_line_reads_the_counts_without_walking_the_sites() -> None:
    states = NoWalking()
    for i in range(1000):
        states[f"s{i}"] = SiteState(site=f"s{i}", status=Status.DOWN if i % 10 == 0 else Status.UP)
    assert summary_line(states) == "1000 sites, 100 down"


def test_a_site_that_changes_status_moves_between_the_counts() -> None:
    states = SiteStates()
    states["a"] = SiteState(site="a")
    assert states.count(Status.UNKNOWN) == 1
    states["a"] = SiteState(site="a", status=Status.DOWN)
    assert (states.count(Status.UNKNOWN), states.count(Status.DOWN)) == (0, 1)
    del states["a"]
    assert summary_line(states) == "0 sites, 0 down"
