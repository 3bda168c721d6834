"""Every site's current `SiteState`, with running counts by status.

The systemd STATUS line ("20000 sites, 3 down") is sent on every state change; counting by walking
every site made each change O(N), so a start with N sites changing once was O(N^2). The counts here
change with each set and delete: reading them costs O(1). Pure: a mapping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from sentinel.monitor import SiteState, Status


class SiteStates(MutableMapping[str, SiteState]):
    """name -> SiteState, counting the sites in each status as entries are set and deleted."""

    __slots__ = ("_counts", "_states")

    def __init__(self) -> None:
        self._states: dict[str, SiteState] = {}
        self._counts: dict[Status, int] = dict.fromkeys(Status, 0)

    def __getitem__(self, name: str) -> SiteState:
        return self._states[name]

    def __setitem__(self, name: str, state: SiteState) -> None:
        old = self._states.get(name)
        self._states[name] = state
        if old is not None:
            if old.status is state.status:  # every probe but a change: the counts stay
                return
            self._counts[old.status] -= 1
        self._counts[state.status] += 1

    def __delitem__(self, name: str) -> None:
        old = self._states.pop(name)
        self._counts[old.status] -= 1

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def count(self, status: Status) -> int:
        """How many sites are in `status` now. O(1)."""
        return self._counts[status]


def summary_line(states: SiteStates) -> str:
    """The one-line summary for systemd's STATUS= ("3 sites, 1 down"). O(1)."""
    return f"{len(states)} sites, {states.count(Status.DOWN)} down"
