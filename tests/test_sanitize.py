"""The one rule for untrusted text: what breaks a line is refused in a config, escaped in a log
line and blanked in an email header, the STATUS= line, a probe message and an SMTP error."""

from __future__ import annotations

import html
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import ConfigError, parse_config
from sentinel.logsetup import defuse, kv
from sentinel.parse.early import parse_early
from sentinel.probes.common import clean_message
from sentinel.sanitize import (
    escape_controls,
    escape_html,
    has_control,
    html_text,
    mark_controls,
    one_line,
    quote,
)
from sentinel.systemd import sanitize_status
from sentinel.webviews.status_page import attr, text

LINE_BREAKERS = {"Cc", "Zl", "Zp", "Cs"}
TEXT = st.text(alphabet=st.characters(codec=None), max_size=80)


def breaks_lines(ch: str) -> bool:
    return unicodedata.category(ch) in LINE_BREAKERS


@given(TEXT)
def test_has_control_is_exactly_the_line_breaking_categories(text: str) -> None:
    assert has_control(text) == any(breaks_lines(ch) for ch in text)
    assert not has_control(mark_controls(text))
    assert not has_control(quote(text)[1:-1].replace('\\"', '"'))


@given(TEXT)
def test_the_status_page_keeps_tab_and_newline_and_replaces_every_other_line_breaker(
    value: str,
) -> None:
    safe = html_text(value)
    assert len(safe) == len(value)
    for before, after in zip(value, safe, strict=True):
        kept = before in "\t\n" or not breaks_lines(before)
        assert after == (before if kept else "\ufffd")
    assert text(value) == text(safe) and attr(value) == attr(safe)
    attr(value).encode()  # a lone surrogate can no longer fail the page


@given(TEXT, st.integers(min_value=1, max_value=100))
def test_one_line_leaves_no_line_breaker_or_format_character_and_respects_the_limit(
    text: str, limit: int
) -> None:
    line = one_line(text, limit)
    assert len(line) <= limit
    assert not any(breaks_lines(ch) or unicodedata.category(ch) == "Cf" for ch in line)
    assert line == line.strip() and "  " not in line
    assert one_line(line, limit) == line


@given(TEXT)
def test_escaping_keeps_everything_visible_on_one_line(text: str) -> None:
    escaped = escape_controls(text)
    assert not any(breaks_lines(ch) for ch in escaped if ch != "\t")
    assert "\n" not in kv(msg=text)


@pytest.mark.parametrize("ch", ["\n", "\r", "\x1b", "\x85", "\u2028", "\u2029", "\x00"])
def test_every_place_treats_a_line_breaker_alike(ch: str) -> None:
    text = f"bad{ch}line"
    for cleaned in (one_line(text, 100), clean_message(text), sanitize_status(text)):
        assert cleaned == "bad line"
    assert ch not in defuse(text)
    assert has_control(text)


def test_the_early_config_refuses_c1_controls_like_the_rest_of_the_config() -> None:
    """The early-warning paths used to refuse only C0 controls: NEL (U+0085) got through."""
    with pytest.raises(ConfigError) as info:
        parse_early(None, {"disks": ["/var\x85/x"]})
    assert info.value.errors[0].startswith("host: disks: invalid mount point")
    with pytest.raises(ConfigError):
        parse_early([{"name": "w", "pid_file": "/run/a\x85.pid"}], None)
    with pytest.raises(ConfigError):
        parse_config({"sites": [{"name": "a\x85b", "url": "http://a.example/"}]})


@given(st.text(alphabet=st.sampled_from("&<>\"'a;#x é\u202e"), max_size=40) | TEXT, st.booleans())
def test_html_escaping_is_the_standard_librarys(value: str, quote: bool) -> None:
    assert escape_html(value, quote) == html.escape(value, quote)
    assert escape_html(value) == html.escape(value)
