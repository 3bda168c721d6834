"""The MIME shell every sentinel email shares: headers (RFC 2047-encoded so that any text
survives), the threading and identification headers, and the text + HTML bodies (the text wrapped
to 78 columns, the HTML a responsive page that a phone shows without sideways scrolling).

Site, heartbeat and early-warning emails differ in what they say, not in how it is packaged: they
all come through `base_message` and `attach_bodies`. Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

from sentinel.notify.wording import TEXT_WIDTH, wrap_lines
from sentinel.sanitize import escape_html, one_line

__all__ = [
    "POLICY",
    "attach_bodies",
    "base_message",
    "fields_html",
    "html_page",
    "message_domain",
    "state_badge",
    "text_header",
    "wire_header",
]

# policy.SMTP = the modern (EmailMessage) policy with CRLF line endings: non-ASCII headers are
# RFC 2047-encoded and long ones folded on output.
POLICY = email.policy.SMTP

_FALLBACK_DOMAIN = "sentinel.invalid"
_DOMAIN_CHARS_RE = re.compile(r"[^A-Za-z0-9.-]")
_MIN_TS = 0.0
_MAX_TS = 253402300799.0  # 9999-12-31 23:59:59 UTC


def _utc(ts: float) -> datetime:
    value = ts if math.isfinite(ts) else 0.0
    return datetime.fromtimestamp(min(max(value, _MIN_TS), _MAX_TS), tz=UTC)


# ---------------------------------------------------------------- RFC 2047 headers

MAX_LINE = 78  # RFC 5322's recommended line length; also the policy's refold threshold


def _encoded_words(text: str, max_len: int, first_max_len: int) -> list[str]:
    """`text` as UTF-8 base64 encoded words of at most `max_len` characters (the first one at
    most `first_max_len`), never splitting a character: each word must decode on its own."""

    def capacity(length: int) -> int:
        return max(4, (length - len("=?utf-8?b??=")) // 4 * 3)

    max_bytes = capacity(first_max_len)
    chunks: list[bytes] = []
    chunk = b""
    for ch in text:
        data = ch.encode("utf-8")
        if chunk and len(chunk) + len(data) > max_bytes:
            chunks.append(chunk)
            chunk = b""
            max_bytes = capacity(max_len)
        chunk += data
    if chunk:
        chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks]


def wire_header(name: str, value: str) -> str | None:
    """The header's value as it goes on the wire (folded, encoded), or None when the policy can
    fold it unaided.

    CPython's folder (3.11/3.12) separates adjacent encoded words with a space that is not part
    of either word, and RFC 2047 decoders drop such whitespace ("café — x" arrives as "café— x").
    So values with non-ASCII text (or a literal "=?" that a reader would decode) are encoded here:
    an ASCII head kept readable for filters, then encoded words that carry their own spaces, one
    per folded line (the whitespace between two encoded words is not part of the text).
    """
    first = next((i for i, ch in enumerate(value) if not ch.isascii()), len(value))
    literal = value.find("=?")
    if literal != -1:
        first = min(first, literal)
    budget = MAX_LINE - len(name) - 2  # room on the first line, after "Name: "
    if len(value.split(" ", 1)[0]) > budget:
        # A first word too long for the first line: CPython would fold right after "Name:",
        # and its parser then keeps the fold's space as part of the value (" blog").
        first = 0
    if first == len(value):
        return None
    head_end = value.rfind(" ", 0, min(first, budget)) + 1  # the head keeps its trailing space
    head, tail = value[:head_end], value[head_end:]
    word_len = min(75, budget)
    room = budget - len(head)  # what is left on the first line
    words = _encoded_words(tail, word_len, room if room >= 24 else word_len)
    lines = [head]
    for index, word in enumerate(words):
        if index > 0 or len(head) + len(word) > budget:
            lines.append(" ")
        lines[-1] += word
    if len(lines) > 1 and lines[0].endswith(" "):
        # The fold (CRLF + space) now stands for the space that ended the head.
        lines[0] = lines[0][:-1]
    return "\r\n".join(lines)


def text_header(msg: EmailMessage, name: str, value: str) -> None:
    """Set a header whose value may hold any text (already one line)."""
    encoded = wire_header(name, value)
    if encoded is None:
        msg[name] = value
    else:
        # Stored as is: the generator emits such a value verbatim while its lines fit in 78
        # columns (policy.refold_source == "long"), and reading the header decodes it.
        msg.set_raw(name, encoded)


def message_domain(sender: str) -> str:
    """The domain for Message-IDs: the sender address's domain, IDNA-encoded, or a safe fallback.
    Never a hostname lookup."""
    _, address = email.utils.parseaddr(sender)
    local, at, domain = address.rpartition("@")
    domain = domain.strip().strip(".").lower()
    if not at or not local or not domain:
        return _FALLBACK_DOMAIN
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = domain.encode("ascii", "replace").decode("ascii")
    domain = _DOMAIN_CHARS_RE.sub("-", domain)[:253]
    return domain or _FALLBACK_DOMAIN


def base_message(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    at: float,
    message_id: str,
    kind: str,
    root: str | None = None,
    site: str | None = None,
) -> EmailMessage:
    """The headers of every sentinel email: Subject (one line, any text), From, To, Date,
    Message-ID, In-Reply-To/References when `root` is the thread it belongs to, Auto-Submitted,
    X-Sentinel-Kind and, for a site, X-Sentinel-Site."""
    msg = EmailMessage(policy=POLICY)
    text_header(msg, "Subject", one_line(subject, 400))
    msg["From"] = one_line(sender, 998)
    msg["To"] = ", ".join(one_line(r, 998) for r in recipients)
    msg["Date"] = email.utils.format_datetime(_utc(at))
    msg["Message-ID"] = message_id
    if root is not None:
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    msg["X-Sentinel-Kind"] = kind
    if site is not None:
        text_header(msg, "X-Sentinel-Site", site)
    return msg


# ---------------------------------------------------------------- bodies

_STYLE = """\
body{margin:0;padding:12px;font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,\
sans-serif;color:#1b1b1b;background:#ffffff}
.wrap{max-width:640px;margin:0 auto}
p,li,dd,dt,h1,a{overflow-wrap:anywhere;word-break:break-word}
h1{font-size:18px;margin:10px 0}
h2{font-size:15px;margin:18px 0 6px}
.state{display:inline-block;padding:3px 10px;border:2px solid;border-radius:4px;\
font-weight:700;letter-spacing:.04em}
.bad{color:#ffffff;background:#b3261e;border-color:#b3261e}
.good{color:#ffffff;background:#1e6b34;border-color:#1e6b34}
.warn{color:#1b1b1b;background:#f2c94c;border-color:#8a6d00}
.info{color:#1b1b1b;background:#e8eaed;border-color:#5f6368}
dl{margin:0}
dt{font-weight:600;margin-top:8px}
dd{margin:0}
ul{padding-left:20px;margin:6px 0}
li{margin:4px 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:13px}
a{color:#0b57d0}
.muted{color:#5f6368}
@media (prefers-color-scheme:dark){body{color:#e8eaed;background:#121212}a{color:#8ab4f8}\
.muted{color:#9aa0a6}}
"""

# The state as a word and a shape: never colour alone.
_BADGES = {
    "bad": "\u25bc",  # down-pointing triangle
    "good": "\u25b2",  # up-pointing triangle
    "warn": "\u25c6",  # diamond
    "info": "\u25cf",  # circle
}


def state_badge(word: str, tone: str) -> str:
    """`<span class="state bad">▼ DOWN</span>`: the state highlighted by a shape, a word and a
    colour (tone: bad, good, warn, info)."""
    shape = _BADGES.get(tone, _BADGES["info"])
    return f'<span class="state {tone}">{shape} {escape_html(word)}</span>'


def fields_html(fields: Sequence[tuple[str, str]]) -> str:
    """Name/value pairs as a definition list (stacks on a phone; a URL value becomes a link)."""
    rows = []
    for name, value in fields:
        shown = escape_html(value)
        if value.startswith(("http://", "https://")) and " " not in value:
            shown = f'<a href="{escape_html(value, quote=True)}">{shown}</a>'
        rows.append(f"<dt>{escape_html(name)}</dt><dd>{shown}</dd>\n")
    return "<dl>\n" + "".join(rows) + "</dl>\n"


def html_page(*, title: str, badge: str, headline: str, body: str) -> str:
    """A whole HTML document: viewport and lang set, one column at most 640 px wide, long words
    (URLs, names) broken rather than overflowing. `badge` and `body` are HTML; `title` and
    `headline` are text."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{escape_html(title)}</title>\n<style>\n{_STYLE}</style></head>\n"
        '<body><div class="wrap">\n'
        f"<p>{badge}</p>\n<h1>{escape_html(headline)}</h1>\n{body}"
        '<p class="muted">&mdash; sentinel</p>\n</div></body></html>\n'
    )


def attach_bodies(msg: EmailMessage, text_lines: Sequence[str], body_html: str | None) -> None:
    """The text part (every line wrapped to 78 columns) and, when given, the HTML alternative,
    with a MIME boundary derived from the content so the same alert gives the same bytes."""
    lines = wrap_lines(text_lines, TEXT_WIDTH)
    msg.set_content("\n".join(lines) + "\n", charset="utf-8", cte="quoted-printable")
    if body_html is None:
        return
    msg.add_alternative(body_html, subtype="html", charset="utf-8", cte="quoted-printable")
    # "=_" can never occur in quoted-printable text, so the boundary cannot collide with a line.
    digest = hashlib.sha256("\n".join([*lines, body_html]).encode("utf-8")).hexdigest()
    msg.set_boundary(f"=_sentinel_{digest[:32]}")
