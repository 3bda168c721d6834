"""Short human durations as the status page shows them ('45 s', '12 min', '3 h 5 min', '2 d 4 h'),
and the step by which such a text changes, so that a cache of what shows a growing duration
(an ongoing incident's) is drawn again only when the text would change. Pure."""

from __future__ import annotations

_MINUTE = 60
_DAY = 86400


def duration(seconds: float) -> str:
    """A short human duration: '45 s', '12 min', '3 h 5 min', '2 d 4 h' (negative: '0 s')."""
    s = max(0, int(seconds))
    if s < _MINUTE:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < _DAY:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def duration_step(seconds: float) -> int:
    """An integer >= 0 that is equal for two durations exactly when their `duration` texts are:
    the whole seconds below a minute, the whole minutes below a day, the whole hours beyond
    (in three ranges that do not meet)."""
    s = max(0, int(seconds))
    if s < _MINUTE:
        return s  # 0 .. 59
    if s < _DAY:
        return _MINUTE + s // 60  # 61 .. 1,499
    return 1500 + s // 3600  # 1,524 ..
