"""Log formatting: journald priority prefixes, ISO timestamps, key=value fields, no forged lines."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from sentinel.logsetup import (
    configure_logging,
    defuse,
    kv,
    stream_is_journal,
    unconfigure_logging,
)

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ ")


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    """A real file as the log stream, so it has a device and an inode like journald's socket."""
    with open(tmp_path / "log.txt", "w", encoding="utf-8") as stream:
        yield stream
    unconfigure_logging()


def journal_env(stream: TextIO) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def written(stream: TextIO) -> list[str]:
    stream.flush()
    return Path(stream.name).read_text(encoding="utf-8").splitlines()


def test_journal_stream_matching_the_stream_gives_priority_prefixes_and_no_timestamp(
    log_file: TextIO,
) -> None:
    configure_logging("debug", stream=log_file, environ=journal_env(log_file))
    log = logging.getLogger("sentinel.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert written(log_file) == ["<7>d", "<6>i", "<4>w", "<3>e", "<3>c"]


def test_journal_stream_of_another_file_means_plain_iso_lines(
    log_file: TextIO, tmp_path: Path
) -> None:
    with open(tmp_path / "other.txt", "w", encoding="utf-8") as other:
        env = journal_env(other)
    configure_logging("info", stream=log_file, environ=env)
    logging.getLogger("sentinel.scheduler").info("tick")
    [line] = written(log_file)
    assert ISO_LINE.match(line), line
    assert line.endswith(" INFO sentinel.scheduler tick")


def test_without_journal_stream_lines_carry_a_utc_iso_timestamp(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ={})
    logging.getLogger("sentinel.daemon").warning("config reloaded %s", kv(sites=3))
    [line] = written(log_file)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING sentinel\.daemon config reloaded sites=3", line
    ), line


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "a:b"])
def test_malformed_journal_stream_is_not_the_journal(log_file: TextIO, value: str) -> None:
    assert not stream_is_journal(log_file, {"JOURNAL_STREAM": value})


def test_a_stream_without_a_file_descriptor_is_not_the_journal() -> None:
    import io

    assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_level_filters_sentinel_messages(log_file: TextIO) -> None:
    configure_logging("warning", stream=log_file, environ={})
    log = logging.getLogger("sentinel.x")
    log.info("hidden")
    log.warning("shown")
    assert [line.rsplit(" ", 1)[1] for line in written(log_file)] == ["shown"]


def test_level_names_are_case_insensitive(log_file: TextIO) -> None:
    configure_logging("DEBUG", stream=log_file, environ={})
    assert logging.getLogger("sentinel").level == logging.DEBUG


@pytest.mark.parametrize("bad", ["verbose", "", "trace", "critical"])
def test_invalid_level_raises_value_error_naming_the_choices(bad: str) -> None:
    with pytest.raises(ValueError, match=r"invalid log level .*debug, info, warning, error"):
        configure_logging(bad, environ={})


def test_configuring_twice_does_not_duplicate_lines(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ={})
    configure_logging("info", stream=log_file, environ={})
    logging.getLogger("sentinel").info("once")
    assert len(written(log_file)) == 1


def test_aiohttp_access_log_is_quiet_but_library_warnings_get_through(log_file: TextIO) -> None:
    configure_logging("debug", stream=log_file, environ=journal_env(log_file))
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /metrics HTTP/1.1" 200')
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    assert written(log_file) == ["<3>Task exception was never retrieved"]


def test_python_warnings_are_logged(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ=journal_env(log_file))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    [line] = written(log_file)
    assert line.startswith("<4>")
    assert "deprecated thing" in line


def test_hostile_cr_lf_in_a_message_cannot_forge_a_log_line(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ={})
    body = "oops\n2026-11-26T23:10:05Z ERROR sentinel.daemon site=bank DOWN\rx\x1b[2K"
    logging.getLogger("sentinel.probes").info("body: %s", body)
    lines = written(log_file)
    assert len(lines) == 1
    assert "oops\\n2026-11-26T23:10:05Z ERROR" in lines[0]
    assert "\\r" in lines[0]
    assert "\\x1b[2K" in lines[0]


def test_hostile_newline_in_journal_mode_cannot_forge_a_priority(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ=journal_env(log_file))
    logging.getLogger("sentinel.probes").info("x\n<3>forged error")
    assert written(log_file) == ["<6>x\\n<3>forged error"]


def test_traceback_lines_keep_the_priority_and_are_marked_as_continuations(
    log_file: TextIO,
) -> None:
    configure_logging("info", stream=log_file, environ=journal_env(log_file))
    try:
        raise RuntimeError("boom\n<6>fake")
    except RuntimeError:
        logging.getLogger("sentinel.daemon").exception("probe crashed")
    lines = written(log_file)
    assert lines[0] == "<3>probe crashed"
    assert len(lines) > 2
    # Every traceback line, including one a hostile exception message started, gets the record's
    # priority and the continuation mark; a "<6>" inside is just text.
    assert all(line.startswith("<3>  | ") for line in lines[1:])
    assert lines[-2:] == ["<3>  | RuntimeError: boom", "<3>  | <6>fake"]


def test_traceback_in_plain_mode_is_indented(log_file: TextIO) -> None:
    configure_logging("info", stream=log_file, environ={})
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("sentinel.daemon").exception("failed")
    lines = written(log_file)
    assert ISO_LINE.match(lines[0])
    assert all(line.startswith("  | ") for line in lines[1:])


def test_kv_renders_simple_values_bare_and_quotes_the_rest() -> None:
    assert (
        kv(site="blog", reason="timeout", msg="connection timed out")
        == 'site=blog reason=timeout msg="connection timed out"'
    )


def test_kv_escapes_quotes_backslashes_and_equals() -> None:
    assert kv(msg='say "hi"') == r'msg="say \"hi\""'
    assert kv(path="C:\\x") == r'path="C:\\x"'
    assert kv(q="a=b") == 'q="a=b"'


def test_kv_keeps_one_event_on_one_line() -> None:
    out = kv(msg="line1\r\nline2\x00\x1b", tab="a\tb")
    assert "\n" not in out
    assert "\r" not in out
    assert out == r'msg="line1\r\nline2\x00\x1b" tab="a' + "\t" + 'b"'


def test_kv_renders_empty_none_and_numbers() -> None:
    assert kv(a="", b=None, c=3, d=0.25, e=True) == 'a="" b="" c=3 d=0.25 e=True'


def test_kv_output_is_greppable_by_field() -> None:
    line = kv(site="blog", reason="dns")
    assert "site=blog" in line.split()


def test_defuse_escapes_unicode_line_separators_but_keeps_text() -> None:
    assert defuse("ok\u2028x\u0085é") == "ok\\u2028x\\x85é"
