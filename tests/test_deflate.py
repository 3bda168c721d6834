"""The zlib stream put together from segments (sentinel.webviews.deflate) and the reading of
Accept-Encoding (sentinel.web.weight): pure, against zlib itself."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.web import header_value, weight
from sentinel.webviews.deflate import (
    STORED_MAX,
    Packer,
    ZlibStream,
    adler32_combine,
    crc32_combine,
    inflate,
    stored,
)

texts = st.binary(max_size=3000) | st.sampled_from([b"", b"a", b"<p>x</p>" * 400])


@given(texts, texts, texts)
def test_adler32_combine_equals_the_adler32_of_the_concatenation(
    a: bytes, b: bytes, c: bytes
) -> None:
    ab = adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b))
    assert ab == zlib.adler32(a + b)
    assert adler32_combine(ab, zlib.adler32(c), len(c)) == zlib.adler32(a + b + c)
    assert adler32_combine(1, zlib.adler32(c), len(c)) == zlib.adler32(c)  # (1: no text)


@given(st.integers(0, 65520), st.integers(0, 65520), st.integers(0, 65520), st.integers(0, 65520))
def test_adler32_combine_of_any_checks_and_lengths_stays_in_range(
    a1: int, b1: int, a2: int, b2: int
) -> None:
    # (checks zlib could never give, as a store or a bug could: still a valid Adler-32)
    for length in (0, 1, 65521, 10**9):
        out = adler32_combine(a1 | b1 << 16, a2 | b2 << 16, length)
        assert 0 <= out & 0xFFFF < 65521 and 0 <= out >> 16 < 65521


def test_adler32_combine_with_long_lengths_matches_zlib() -> None:
    big = bytes(range(256)) * 600  # 153,600 bytes: more than the modulus
    head = b"head"
    assert adler32_combine(zlib.adler32(head), zlib.adler32(big), len(big)) == zlib.adler32(
        head + big
    )


# A stream: texts, each either compressed ahead as a segment or given as text when sent.
pieces = st.lists(st.tuples(texts, st.booleans()), max_size=12)


@pytest.mark.parametrize("as_gzip", [False, True])
@settings(max_examples=60, deadline=None)
@given(parts=pieces)
def test_a_stream_of_segments_and_texts_decompresses_to_the_texts(
    as_gzip: bool, parts: list[tuple[bytes, bool]]
) -> None:
    ahead = Packer()  # segments made by another compressor, as the block cache's are
    made = [(t, ahead.segment(t) if is_segment else None) for t, is_segment in parts]
    stream = ZlibStream(gzip=as_gzip)
    out = [stream.start()]
    for t, segment in made:
        out.append(stream.text(t) if segment is None else stream.segment(*segment))
    out.append(stream.end())
    whole = b"".join(t for t, _ in parts)
    # (both check the trailer: gzip's CRC-32 and length, zlib's Adler-32)
    assert (gzip.decompress if as_gzip else zlib.decompress)(b"".join(out)) == whole
    assert stream.size == len(whole)
    # a streaming decompressor given the stream byte by byte says the same
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if as_gzip else zlib.MAX_WBITS)
    got = b"".join(d.decompress(bytes([x])) for x in b"".join(out)) + d.flush()
    assert got == whole and d.eof


@given(st.lists(texts, max_size=8))
def test_segments_one_after_another_inflate_to_their_texts(parts: list[bytes]) -> None:
    packer = Packer()
    segments = [packer.segment(p) for p in parts]
    assert inflate(b"".join(s for s, _, _, _ in segments)) == b"".join(parts)
    for part, (data, check, crc, size) in zip(parts, segments, strict=True):
        assert (check, crc, size) == (zlib.adler32(part), zlib.crc32(part), len(part))
        assert inflate(data) == part


@given(texts, texts, texts)
def test_crc32_combine_equals_the_crc32_of_the_concatenation(a: bytes, b: bytes, c: bytes) -> None:
    ab = crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b))
    assert ab == zlib.crc32(a + b)
    assert crc32_combine(ab, zlib.crc32(c), len(c)) == zlib.crc32(a + b + c)
    assert crc32_combine(0, zlib.crc32(c), len(c)) == zlib.crc32(c)  # (0: no text)


def test_crc32_combine_across_more_zeros_than_it_keeps_matches_zlib() -> None:
    big = bytes(range(256)) * 600  # 153,600 bytes: more than its 16 KiB of zeros, many times
    head = b"head"
    assert crc32_combine(zlib.crc32(head), zlib.crc32(big), len(big)) == zlib.crc32(head + big)


def test_the_gzip_header_and_trailer_are_rfc_1952() -> None:
    stream = ZlibStream(gzip=True)
    head = stream.start()
    assert head[:3] == b"\x1f\x8b\x08" and head[3] == 0 and len(head) == 10  # no flags
    body = stream.text(b"hello")
    end = stream.end()
    assert end[-8:] == zlib.crc32(b"hello").to_bytes(4, "little") + (5).to_bytes(4, "little")
    assert gzip.decompress(head + body + end) == b"hello"


def test_stored_blocks_split_long_text_and_short_text_is_stored() -> None:
    big = bytes(range(256)) * 700  # 179,200 bytes: three stored blocks
    assert inflate(stored(big)) == big
    assert inflate(stored(b"")) == b""
    short = b"x" * STORED_MAX
    assert ZlibStream().text(short) == stored(short)


def test_the_stream_header_and_trailer_are_rfc_1950() -> None:
    stream = ZlibStream()
    head = stream.start()
    assert (head[0] * 256 + head[1]) % 31 == 0 and head[0] & 0x0F == 8 and not head[1] & 0x20
    body = stream.text(b"hello")
    end = stream.end()
    assert end[-4:] == zlib.adler32(b"hello").to_bytes(4, "big")
    assert zlib.decompress(head + body + end) == b"hello"


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        (None, False),  # no field: the plain body
        ("", False),
        ("deflate", True),
        ("gzip, deflate, br, zstd", True),  # browsers
        ("deflate, gzip, br, zstd", True),  # curl --compressed
        ("gzip", False),  # Go's http client
        ("DEFLATE", True),
        ("gzip;q=1.0, deflate;q=0.5", True),
        ("deflate;q=0", False),
        ("deflate ; q=0.000", False),
        ("deflate;q=0.001", True),
        ("deflate;Q=0", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", True),
        ("*, deflate;q=0", False),  # named: its own weight wins over the wildcard's
        ("deflate;q=0, *", False),
        ("identity", False),
        ("deflate;q=bogus", False),
        ("x-deflate, deflated", False),
        (" , ,deflate", True),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(value: str | None, taken: bool) -> None:
    assert (weight(value, "deflate") > 0) is taken


@pytest.mark.parametrize(
    ("value", "deflate", "gzip"),
    [
        ("gzip", 0.0, 1.0),  # Go's http client, CDNs: gzip only
        ("gzip, deflate, br", 1.0, 1.0),
        ("gzip;q=1.0, deflate;q=0.5", 0.5, 1.0),
        ("deflate;q=0, *", 0.0, 1.0),
        ("*;q=0.3, gzip;q=0", 0.3, 0.0),
        ("gzip;q=nan", 0.0, 0.0),
        (None, 0.0, 0.0),
    ],
)
def test_the_weights_of_deflate_and_gzip(value: str | None, deflate: float, gzip: float) -> None:
    assert (weight(value, "deflate"), weight(value, "gzip")) == (deflate, gzip)


def test_header_value_joins_repeated_fields_and_ignores_case() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: x\r\naccept-encoding: gzip;q=0\r\n"
        b"Accept-Encoding:  deflate \r\nX-Other: deflate\r\n\r\n"
    )
    assert header_value(head, b"accept-encoding") == "gzip;q=0, deflate"
    assert header_value(head, b"absent") is None
    assert weight(header_value(head, b"accept-encoding"), "deflate") > 0
