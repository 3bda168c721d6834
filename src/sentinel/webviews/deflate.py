"""A zlib stream (RFC 1950; what HTTP calls `Content-Encoding: deflate`, RFC 9110 8.4.1.2) put
together from raw-deflate segments compressed ahead of time and text compressed as it is sent.

A *segment* is a piece of text compressed on its own: raw deflate (no header), ended at a flush
point (`Z_FULL_FLUSH`: byte-aligned, nothing after it refers back into it, nothing in it refers
to anything before it), so segments and freshly compressed text can follow each other in any
order and still be one valid deflate stream. Whoever keeps a segment keeps the Adler-32 and the
length of its text with it: the stream's trailer, the Adler-32 of the whole text, is then
worked out from those (`adler32_combine`) without reading the segments.

The same segments make a gzip stream (RFC 1952) too: only the header and the trailer differ,
a CRC-32 of the whole text instead of an Adler-32. Adler-32s combine with a few integer
operations; CRC-32s (Python's zlib module has no `crc32_combine`) by running zlib's crc32 over
as many zero bytes as the second text is long (`crc32_combine`: ~2 us for a site's 6 KB). So
deflate is what a client that takes both gets; gzip is for those that take only it (Go's HTTP
client, CDNs in front of a public page).

Pure: no I/O. `Packer` owns one compressor (~64 KiB while it lives).
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

ADLER_MOD: Final = 65521  # the largest prime below 2**16 (RFC 1950)
LEVEL: Final = 6  # what a cached segment is compressed once with; ~10 % smaller than level 1
WBITS: Final = 13  # an 8 KiB window: a site's block is ~6 KiB; smaller compressor state
MEM_LEVEL: Final = 6
# The zlib header: CM 8 (deflate) with a 32 KiB window (CINFO 7: any window up to it, ours is
# smaller), FLEVEL 2 (default), FCHECK making it a multiple of 31; no preset dictionary.
ZLIB_HEADER: Final = b"\x78\x9c"
# The end of the stream: a final empty block with fixed codes (BFINAL 1, BTYPE 01, the
# end-of-block code: 10 bits), then the Adler-32 of the whole text, big-endian.
FINAL_BLOCK: Final = b"\x03\x00"
# gzip's header: ID1 ID2, CM 8 (deflate), no flags, no time (0), XFL 0, OS 255 (unknown)
GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
STORED_MAX: Final = 128  # dynamic text up to this long is sent as a stored block
_STORED = struct.Struct("<BHH")
STORED_HEAD = _STORED.pack  # (0, n, n ^ 0xFFFF): the head of a stored block of n < 65536 bytes


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """The Adler-32 of A + B from that of A (`adler1`), that of B (`adler2`) and B's length
    (zlib's `adler32_combine`): A's byte sum grows by B's (less B's starting 1), and A's sum of
    sums is counted `len2` more times."""
    rem = len2 % ADLER_MOD
    a1 = adler1 & 0xFFFF
    a = (a1 + (adler2 & 0xFFFF) - 1) % ADLER_MOD
    b = ((adler1 >> 16) + (adler2 >> 16) + rem * (a1 - 1)) % ADLER_MOD
    return a | (b << 16)


_ZEROS: Final = bytes(16384)  # (a site's block is ~6 KB; longer runs take it a few times)
_ZERO_VIEW: Final = memoryview(_ZEROS)


def _over_zeros(crc: int, n: int) -> int:
    """zlib.crc32 of n zero bytes, starting from `crc`."""
    while n > len(_ZEROS):
        crc = zlib.crc32(_ZEROS, crc)
        n -= len(_ZEROS)
    return zlib.crc32(_ZERO_VIEW[:n], crc)


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from that of A (`crc1`), that of B (`crc2`) and B's length. zlib's
    crc32(data, start) is affine in `start` and `data` together, so crc32(B, c) = crc32(B, 0)
    ^ (crc32(Z, c) ^ crc32(Z, 0)) with Z as many zero bytes as B: A's CRC carried across
    B's length, without B."""
    return crc2 ^ _over_zeros(crc1, len2) ^ _over_zeros(0, len2)


def stored(data: bytes) -> bytes:
    """`data` as stored (uncompressed) deflate blocks, not final; starts and ends byte-aligned."""
    out = []
    for start in range(0, len(data), 0xFFFF):
        part = data[start : start + 0xFFFF]
        out.append(_STORED.pack(0, len(part), len(part) ^ 0xFFFF) + part)
    return b"".join(out)


def inflate(segments: bytes) -> bytes:
    """The text of segments (or of any deflate data that ends at a flush point)."""
    return zlib.decompress(segments + FINAL_BLOCK, -zlib.MAX_WBITS)


class Packer:
    """Compresses texts into segments or into flushed deflate data, with one compressor made
    when first needed (making one costs ~100 us, more than compressing a site's block)."""

    __slots__ = ("_compressor",)

    def __init__(self) -> None:
        self._compressor: zlib._Compress | None = None

    def deflate(self, data: bytes) -> bytes:
        """`data` as raw deflate ended at a full flush (independent of what came before)."""
        if not data:
            return b""
        c = self._compressor
        if c is None:
            c = self._compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -WBITS, MEM_LEVEL)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    def segment(self, data: bytes) -> tuple[bytes, int, int, int]:
        """`data` as a segment: (its deflate data, the Adler-32 and the CRC-32 of `data`, its
        length)."""
        return self.deflate(data), zlib.adler32(data), zlib.crc32(data), len(data)


class ZlibStream:
    """Builds a zlib stream (or with `gzip`, a gzip stream) piece by piece: `start()`, then any
    mix of `text` (compressed now, or stored when short) and `segment` (compressed before),
    then `end()`. Each call returns the bytes to send; `check` is the running Adler-32 (gzip:
    CRC-32), `size` the text's length so far."""

    __slots__ = ("check", "gzip", "packer", "size")

    def __init__(self, packer: Packer | None = None, *, gzip: bool = False) -> None:
        self.packer = packer if packer is not None else Packer()
        self.gzip = gzip
        self.check = 0 if gzip else 1  # the CRC-32 or the Adler-32 of no text
        self.size = 0

    def start(self) -> bytes:
        return GZIP_HEADER if self.gzip else ZLIB_HEADER

    def text(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self.gzip:
            self.check = zlib.crc32(data, self.check)
        else:
            self.check = zlib.adler32(data, self.check)
        self.size += len(data)
        return stored(data) if len(data) <= STORED_MAX else self.packer.deflate(data)

    def segment(self, deflated: bytes, adler: int, crc: int, size: int) -> bytes:
        """A segment (or several in a row), whose text has Adler-32 `adler`, CRC-32 `crc` and
        length `size`."""
        if self.gzip:
            self.check = crc32_combine(self.check, crc, size)
        else:
            self.check = adler32_combine(self.check, adler, size)
        self.size += size
        return deflated

    def end(self) -> bytes:
        if self.gzip:
            trailer = self.check.to_bytes(4, "little") + (self.size & 0xFFFFFFFF).to_bytes(
                4, "little"
            )
            return FINAL_BLOCK + trailer
        return FINAL_BLOCK + self.check.to_bytes(4, "big")
