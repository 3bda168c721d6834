"""Untrusted text made safe for one line: email headers, log lines, metric labels, systemd's
STATUS=, the status page. One rule, where several copies used to disagree on control characters.

Two kinds of characters are at issue (by Unicode category):
- line breakers (`Cc`: C0 and C1 controls incl. CR, LF, NEL, ESC; `Zl`/`Zp`: U+2028/U+2029; `Cs`:
  lone surrogates, not encodable): a config value holding one is refused (`has_control`);
- disguisers (`Cf`: bidi overrides, zero-width characters) may be legitimate in a name (emoji
  sequences) but not in a line sentinel writes from a server's words: `one_line` blanks them too.
Pure; a leaf module (imports nothing of sentinel).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["has_control", "mark_controls", "one_line", "quote"]

_LINE_BREAKERS = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BLANKED = _LINE_BREAKERS | {"Cf"}
_SPACES_RE = re.compile(r"\s+")


def has_control(text: str) -> bool:
    """True if `text` holds a character that could break or forge a line (see the module)."""
    return any(unicodedata.category(ch) in _LINE_BREAKERS for ch in text)


def mark_controls(text: str, mark: str = "?") -> str:
    """Each line-breaking character replaced by `mark` (for quoting a user's bad input back)."""
    return "".join(mark if unicodedata.category(ch) in _LINE_BREAKERS else ch for ch in text)


def quote(text: str) -> str:
    """`text` in double quotes for a one-line message: line breakers as '?', quotes escaped."""
    return '"' + mark_controls(text).replace('"', '\\"') + '"'


def one_line(text: str, limit: int) -> str:
    """One short line: line breakers, format characters and whitespace runs become one space,
    the ends are stripped, and more than `limit` characters are cut to `limit` ending in '…'."""
    chars = [" " if ch.isspace() or unicodedata.category(ch) in _BLANKED else ch for ch in text]
    line = _SPACES_RE.sub(" ", "".join(chars)).strip()
    if len(line) > limit:
        line = line[: max(0, limit - 1)].rstrip() + "…"
    return line
