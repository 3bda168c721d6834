"""Untrusted text made safe for one line: email headers, log lines, metric labels, systemd's
STATUS=, the status page. One rule, where several copies used to disagree on control characters.

Two kinds of characters are at issue (by Unicode category):
- line breakers (`Cc`: C0 and C1 controls incl. CR, LF, NEL, ESC; `Zl`/`Zp`: U+2028/U+2029; `Cs`:
  lone surrogates, not encodable): a config value holding one is refused (`has_control`), a log
  line shows it escaped (`escape_controls`);
- disguisers (`Cf`: bidi overrides, zero-width characters) may be legitimate in a name (emoji
  sequences) but not in a line sentinel writes from a server's words: `one_line` blanks them too.
Pure; a leaf module (imports nothing of sentinel).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "escape_controls",
    "escape_html",
    "has_control",
    "html_text",
    "mark_controls",
    "needs_escaping",
    "one_line",
    "quote",
]

# Exactly the categories Cc (U+0000-001F, U+007F-009F), Zl (U+2028), Zp (U+2029) and Cs (the
# surrogates), as a character class: these run on every log line, so a regex, not a loop.
_LINE_BREAKER_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same but TAB, which is harmless in a log line.
_ESCAPED_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same but TAB and LF, which are whitespace in HTML (a page may show a multi-line message).
_HTML_UNSAFE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}
_BLANKED = frozenset({"Cc", "Zl", "Zp", "Cs", "Cf"})
_SPACES_RE = re.compile(r"\s+")


def has_control(text: str) -> bool:
    """True if `text` holds a character that could break or forge a line (see the module)."""
    return _LINE_BREAKER_RE.search(text) is not None


def mark_controls(text: str, mark: str = "?") -> str:
    """Each line-breaking character replaced by `mark` (for quoting a user's bad input back)."""
    return _LINE_BREAKER_RE.sub(mark, text)


def html_text(text: str) -> str:
    """Each line breaker but TAB and LF replaced by U+FFFD, before HTML escaping: a control
    character is invalid in HTML, a lone surrogate cannot be encoded; neither is shown as is."""
    return _HTML_UNSAFE_RE.sub("\ufffd", text)


def escape_html(text: str, quote: bool = True) -> str:
    """`text` with &, < and > (and with `quote`, both quotes) as character references: the same
    output as the standard library's `html.escape`. Written here because importing `html` loads
    its table of 2,231 named references for `unescape` (~0.3 MiB a daemon keeps for good), which
    sentinel never calls."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        text = text.replace('"', "&quot;").replace("'", "&#x27;")
    return text


def quote(text: str) -> str:
    """`text` in double quotes for a one-line message: line breakers as '?', quotes escaped."""
    return '"' + mark_controls(text).replace('"', '\\"') + '"'


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every line breaker but TAB shown escaped (\\n, \\r, \\x1b, \\u2028): it cannot
    start a new log line or move the cursor, and nothing is lost. Backslashes are left alone."""
    return _ESCAPED_RE.sub(_escape, text)


def needs_escaping(text: str) -> bool:
    """True if `escape_controls` would change `text`."""
    return _ESCAPED_RE.search(text) is not None


def one_line(text: str, limit: int) -> str:
    """One short line: line breakers, format characters and whitespace runs become one space,
    the ends are stripped, and more than `limit` characters are cut to `limit` ending in '…'."""
    chars = [" " if ch.isspace() or unicodedata.category(ch) in _BLANKED else ch for ch in text]
    line = _SPACES_RE.sub(" ", "".join(chars)).strip()
    if len(line) > limit:
        line = line[: max(0, limit - 1)].rstrip() + "…"
    return line
