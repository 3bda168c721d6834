"""`object_pieces` writes exactly what one `json.dumps(..., ensure_ascii=False, indent=1)` call
writes, however the long list is cut into batches (sentinel.jsonpieces)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sentinel.jsonpieces import Batches, object_pieces

# JSON values as the API has them: hostile text (quotes, control and RTL characters, emoji)
# in keys and values, nested objects and lists, every kind of number JSON can carry.
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
VALUE = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
MEMBERS = st.dictionaries(TEXT, VALUE, max_size=5)


def cut(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    """`items` in batches of the given sizes (empty batches included), the rest in one more."""
    out, at = [], 0
    for size in sizes:
        out.append(items[at : at + size])
        at += size
    out.append(items[at:])
    return out


@given(
    before=MEMBERS,
    items=st.lists(VALUE, max_size=8),
    sizes=st.lists(st.integers(min_value=0, max_value=3), max_size=5),
    after=MEMBERS,
)
def test_the_pieces_are_the_text_of_one_dumps(
    before: dict[str, Any], items: list[Any], sizes: list[int], after: dict[str, Any]
) -> None:
    key = "sites"
    before.pop(key, None)
    after = {k: v for k, v in after.items() if k not in before and k != key}
    whole = {**before, key: items, **after}
    members = [*before.items(), (key, Batches(cut(items, sizes))), *after.items()]
    assert "".join(object_pieces(members)) == json.dumps(whole, ensure_ascii=False, indent=1)


def test_an_empty_object_and_an_empty_list() -> None:
    assert "".join(object_pieces([])) == "{}"
    assert "".join(object_pieces([("a", Batches([[], []]))])) == '{\n "a": []\n}'


def test_one_piece_per_batch_and_members_after_the_list_are_read_after_it() -> None:
    read: list[str] = []

    def members() -> Any:
        yield "sites", Batches([{"n": i}] for i in range(3))
        read.append("tail")
        yield "tail", 1

    pieces = object_pieces(members())
    first = next(pieces)
    assert first.startswith('{\n "sites": [\n  {') and not read
    rest = list(pieces)
    assert read == ["tail"] and len(rest) == 3  # two more batches, then the end
