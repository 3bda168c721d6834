"""The store's JSON codec against the first hand-written one (its rows are in stores out there): the
same text for every value, and every row the old one wrote decodes to the same value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store_legacy_codec as legacy
from sentinel.early.service import TrendRecord
from sentinel.early.warnings import WarningState
from sentinel.heartbeats.state import HeartbeatState
from sentinel.monitor import SiteState
from sentinel.store import decode_dataclass, decode_state, encode_dataclass, encode_state

SAVED_TYPES: list[type[Any]] = [SiteState, WarningState, HeartbeatState, TrendRecord]
# Any text (the old codec escaped it to ASCII, and so must the new one: the rows are compared).
TEXT = st.text(max_size=20)


def values(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Every field drawn from its type: NaN and infinities, None, Unicode, empty tuples."""
    return st.from_type(cls)


@pytest.mark.parametrize("cls", SAVED_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_text_is_the_old_codecs_and_its_rows_decode_alike(cls: type[Any], data: Any) -> None:
    value = data.draw(values(cls))
    old_text = legacy.encode_dataclass(value)
    assert encode_dataclass(value) == old_text
    # Decoded alike: compared as text, which NaN (never equal to itself) cannot upset.
    new = decode_dataclass(cls, old_text)
    assert type(new) is cls
    assert encode_dataclass(new) == legacy.encode_dataclass(legacy.decode_dataclass(cls, old_text))


@settings(max_examples=100, deadline=None)
@given(state=values(SiteState), key=TEXT)
def test_a_site_states_row_key_is_its_name_as_before(state: SiteState, key: str) -> None:
    text = legacy.encode_state(state)
    assert encode_state(state) == text
    assert encode_state(decode_state(key, text)) == legacy.encode_state(
        legacy.decode_state(key, text)
    )
    # A row without the name (the key is the truth) still decodes.
    data = json.loads(text)
    del data["site"]
    bare = json.dumps(data)
    assert encode_state(decode_state(key, bare)) == legacy.encode_state(
        legacy.decode_state(key, bare)
    )


ROWS_BOTH_REFUSE = [
    "not json",
    "[1, 2]",
    '{"status": "sideways"}',
    '{"consecutive_failures": "3"}',
    '{"consecutive_failures": 3.0}',
    '{"consecutive_failures": true}',
    '{"flapping": 1}',
    '{"recent": [{"at": "noon"}]}',
    '{"recent": {"at": 1}}',
    '{"since": "7"}',
]


@pytest.mark.parametrize("text", ROWS_BOTH_REFUSE)
def test_what_the_old_codec_refused_is_still_refused(text: str) -> None:
    with pytest.raises(ValueError):
        legacy.decode_state("s", text)
    with pytest.raises(ValueError):
        decode_state("s", text)
