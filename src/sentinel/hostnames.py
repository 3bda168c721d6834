"""Host names as they go on the wire, and `connect_to` values. Pure: no I/O.

A non-ASCII host is converted by IDNA 2008 with UTS #46 mapping, non-transitional (the `idna`
package), as browsers and curl do today: `faß.de` is `xn--fa-hia.de`. Python's own `idna` codec
is IDNA 2003, which maps it to `fass.de`, another domain with another owner. ASCII hosts are left
as they are: internal names with `_` are not valid IDNA but resolve fine.
"""

from __future__ import annotations

import re

_BAD_HOST_RE = re.compile(r"[\x00-\x20\x7f-\x9f/?#@\u2028\u2029]")


def ascii_host(host: str) -> str:
    """The host as sent to DNS, in SNI and in `Host:`; ValueError (one line) if not valid IDNA."""
    if host.isascii():
        return host
    # Imported here: its tables cost ~0.5 MiB to import and ~0.7 MiB more once used, which
    # a daemon whose hosts are all ASCII (most) never needs.
    import idna

    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"host name {host!r} is not valid IDNA 2008 ({detail})") from None


def parse_connect_to(value: str) -> tuple[str, int | None]:
    """`ADDRESS[:PORT]` -> (ASCII host, port or None), like curl's `--connect-to`'s target.

    ADDRESS is an IPv4 address, a host name, or an IPv6 address (in brackets when a port
    follows: `[2001:db8::1]:8443`). ValueError with a one-line message otherwise."""
    example = "use ADDRESS[:PORT], e.g. 192.0.2.10 or [2001:db8::1]:8443"
    text = value.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid connect_to {value!r} ({example})")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address, no port
        host = text
    else:
        host, colon, after = text.partition(":")
        port_text = after if colon else None
    if not host or _BAD_HOST_RE.search(host):
        raise ValueError(f"invalid connect_to {value!r} ({example})")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"invalid port in connect_to {value!r} (1..65535)")
        port = int(port_text)
    return ascii_host(host), port
