"""Small SVG badges (shields.io style) for a README: a site's state, its uptime over a period.

Pure. The text is a fixed vocabulary and numbers, never site-supplied, so nothing to escape.
"""

from __future__ import annotations

import math

CONTENT_TYPE = "image/svg+xml; charset=utf-8"
_COLOURS = {"up": "#1a7f37", "down": "#cf222e", "unknown": "#57606a"}
CHAR_WIDTH = 7  # px per character at 11px Verdana, roughly


def _badge(label: str, value: str, colour: str) -> str:
    lw = 10 + CHAR_WIDTH * len(label)
    vw = 10 + CHAR_WIDTH * len(value)
    w = lw + vw
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img"'
        f' aria-label="{label}: {value}"><title>{label}: {value}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{vw}" height="20" fill="{colour}"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="5" y="14">{label}</text><text x="{lw + 5}" y="14">{value}</text></g></svg>'
    )


def status_badge(status: str) -> str:
    word = {"up": "up", "down": "down"}.get(status, "unknown")
    return _badge("status", word, _COLOURS[word])


def uptime_badge(period: str, share: float | None) -> str:
    if share is None:
        return _badge(f"uptime {period}", "no data", _COLOURS["unknown"])
    value = "100%" if share >= 1 else f"{math.floor(share * 10000) / 100:.2f}%"
    colour = (
        _COLOURS["up"] if share >= 0.999 else ("#9a6700" if share >= 0.95 else _COLOURS["down"])
    )
    return _badge(f"uptime {period}", value, colour)
