"""A tiny line-plot to PNG writer (zlib + struct only), so the soak graph needs no matplotlib.

    plot_png(path, [(x, y), ...], title="RSS", x_label="MINUTES", y_label="MIB",
             marks=[x_of_warmup_end], fit=(slope, intercept))

Draws axes with numbered ticks, the series as a line with dots, optional vertical marks (dashed)
and an optional straight fit line. Text uses a built-in 3x5 pixel font (digits, A-Z, a few signs),
scaled 2x.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

Color = tuple[int, int, int]

# 3x5 glyphs, rows top to bottom, 3 bits each (MSB = left column).
_FONT: dict[str, tuple[int, int, int, int, int]] = {
    "0": (7, 5, 5, 5, 7),
    "1": (2, 6, 2, 2, 7),
    "2": (7, 1, 7, 4, 7),
    "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7),
    "6": (7, 4, 7, 5, 7),
    "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2),
    "-": (0, 0, 7, 0, 0),
    "+": (0, 2, 7, 2, 0),
    "/": (1, 1, 2, 4, 4),
    ":": (0, 2, 0, 2, 0),
    "(": (1, 2, 2, 2, 1),
    ")": (4, 2, 2, 2, 4),
    "=": (0, 7, 0, 7, 0),
    ",": (0, 0, 0, 2, 4),
    "%": (5, 1, 2, 4, 5),
    " ": (0, 0, 0, 0, 0),
    "A": (2, 5, 7, 5, 5),
    "B": (6, 5, 6, 5, 6),
    "C": (3, 4, 4, 4, 3),
    "D": (6, 5, 5, 5, 6),
    "E": (7, 4, 6, 4, 7),
    "F": (7, 4, 6, 4, 4),
    "G": (3, 4, 5, 5, 3),
    "H": (5, 5, 7, 5, 5),
    "I": (7, 2, 2, 2, 7),
    "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5),
    "L": (4, 4, 4, 4, 7),
    "M": (5, 7, 7, 5, 5),
    "N": (6, 5, 5, 5, 5),
    "O": (2, 5, 5, 5, 2),
    "P": (6, 5, 6, 4, 4),
    "Q": (2, 5, 5, 6, 3),
    "R": (6, 5, 6, 5, 5),
    "S": (3, 4, 2, 1, 6),
    "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7),
    "V": (5, 5, 5, 5, 2),
    "W": (5, 5, 7, 7, 5),
    "X": (5, 5, 2, 5, 5),
    "Y": (5, 5, 2, 2, 2),
    "Z": (7, 1, 2, 4, 7),
}

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (200, 200, 200)
BLUE: Color = (31, 94, 180)
RED: Color = (200, 40, 40)
GREEN: Color = (30, 140, 60)


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i : i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, dash: int = 0) -> None:
        """Bresenham; `dash` > 0 draws dash-long on/off segments."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, n = dx + dy, 0
        while True:
            if not dash or (n // dash) % 2 == 0:
                self.set(x0, y0, color)
            n += 1
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def dot(self, x: int, y: int, color: Color, r: int = 1) -> None:
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                self.set(x + dx, y + dy, color)

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 2) -> None:
        for ch in text.upper():
            rows = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(rows):
                for c in range(3):
                    if bits & (4 >> c):
                        for sx in range(scale):
                            for sy in range(scale):
                                self.set(x + c * scale + sx, y + r * scale + sy, color)
            x += 4 * scale

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return len(text) * 4 * scale - scale

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def plot_png(
    path: Path,
    points: Sequence[tuple[float, float]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    marks: Sequence[float] = (),
    fit: tuple[float, float] | None = None,
    fit_from: float | None = None,
    width: int = 900,
    height: int = 500,
) -> None:
    """Write a line plot of `points` (x, y) to `path` as a PNG."""
    c = Canvas(width, height)
    left, right, top, bottom = 80, 20, 40, 60
    pw, ph = width - left - right, height - top - bottom
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    y_lo, y_hi = min(ys), max(ys)
    pad = max((y_hi - y_lo) * 0.1, 0.5)
    y_lo, y_hi = max(0.0, y_lo - pad), y_hi + pad

    def px(x: float) -> int:
        return left + round((x - x_lo) / (x_hi - x_lo) * pw)

    def py(y: float) -> int:
        return top + ph - round((y - y_lo) / (y_hi - y_lo) * ph)

    for t in nice_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            c.line(left, py(t), left + pw, py(t), GREY)
            label = _fmt(t)
            c.text(left - 8 - Canvas.text_width(label), py(t) - 5, label)
    for t in nice_ticks(x_lo, x_hi, 8):
        if x_lo <= t <= x_hi:
            c.line(px(t), top + ph, px(t), top + ph + 5, BLACK)
            label = _fmt(t)
            c.text(px(t) - Canvas.text_width(label) // 2, top + ph + 10, label)
    c.line(left, top, left, top + ph, BLACK)
    c.line(left, top + ph, left + pw, top + ph, BLACK)
    for m in marks:
        if x_lo <= m <= x_hi:
            c.line(px(m), top, px(m), top + ph, GREEN, dash=4)
    if fit is not None:
        slope, intercept = fit
        start = fit_from if fit_from is not None else x_lo
        c.line(
            px(start), py(slope * start + intercept), px(x_hi), py(slope * x_hi + intercept), RED
        )
    prev: tuple[int, int] | None = None
    for x, y in points:
        cur = (px(x), py(y))
        if prev is not None:
            c.line(*prev, *cur, BLUE)
        c.dot(*cur, BLUE, 1)
        prev = cur
    c.text(left, 12, title)
    c.text(left + pw - Canvas.text_width(x_label), height - 22, x_label)
    c.text(8, top - 14, y_label)
    path.write_bytes(c.png())
