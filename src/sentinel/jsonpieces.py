"""A JSON object written in pieces: the text of `json.dumps(obj, ensure_ascii=False, indent=1)`,
with one of its members, a long list, encoded a batch of items at a time.

/api/status at 1,000 sites is ~0.6 MB of JSON; `json.dumps` with an indent runs in Python, and
in one call it held the event loop for 50-200 ms (probes waited, their latency grew). Written in
pieces, the server hands the loop back between them. The text is exactly what one `json.dumps`
call gives (tests/test_jsonpieces.py holds it to that), so clients see no difference.

Pure: no I/O; the caller decides how big a batch is and what runs between pieces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


class Batches:
    """A member value to be written as a JSON array, from batches of items produced lazily
    (each batch's items are encoded into one piece)."""

    __slots__ = ("batches",)

    def __init__(self, batches: Iterable[Sequence[Any]]) -> None:
        self.batches = batches


# One encoder for every call: json.dumps with arguments builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, indent=1)


def _value(value: Any, depth: int) -> str:
    """`value` as `json.dumps(..., ensure_ascii=False, indent=1)` writes it `depth` levels deep."""
    text = _ENCODER.encode(value)
    return text.replace("\n", "\n" + " " * depth) if depth else text


def object_pieces(members: Iterable[tuple[str, Any]]) -> Iterator[str]:
    """The JSON object of `members` (key, value) in order, as text pieces whose concatenation is
    `json.dumps(dict(members), ensure_ascii=False, indent=1)` (keys unique). A `Batches` value
    becomes an array, one piece per batch; members are read lazily, so a value computed after a
    `Batches` member (in a generator of members) is computed after its batches were written."""
    head = "{"
    written = False
    for key, value in members:
        head += ("," if written else "") + "\n " + _ENCODER.encode(key) + ": "
        written = True
        if not isinstance(value, Batches):
            head += _value(value, 1)
            continue
        first = True
        for batch in value.batches:
            if not batch:
                continue
            items = ",\n  ".join(_value(item, 2) for item in batch)
            yield head + ("[\n  " if first else ",\n  ") + items
            head = ""
            first = False
        head += "[]" if first else "\n ]"
    yield head + ("\n}" if written else "}")
