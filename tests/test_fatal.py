"""Errors outside the logging handler reach the journal at err/crit priority (sentinel.fatal):
one-line CLI errors, and tracebacks nothing caught, also before logging is set up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sentinel.fatal import error_lines, traceback_lines


def test_error_lines_plain_and_for_the_journal() -> None:
    assert error_lines(["bad", "worse"], journal=False) == "sentinel: bad\nsentinel: worse\n"
    assert error_lines(["bad"], journal=True) == "<3>sentinel: bad\n"


@given(st.lists(st.text(), min_size=1, max_size=4), st.booleans())
def test_every_error_is_exactly_one_line_each(lines: list[str], journal: bool) -> None:
    text = error_lines(lines, journal=journal)
    out = text.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1
    assert all(x.startswith("<3>sentinel: " if journal else "sentinel: ") for x in out[:-1])


def test_a_traceback_is_at_crit_priority_line_by_line() -> None:
    try:
        raise RuntimeError("boom\nforged line")
    except RuntimeError as exc:
        text = traceback_lines(type(exc), exc, exc.__traceback__, journal=True)
    lines = text.splitlines()
    assert lines[0] == "<2>sentinel: internal error: RuntimeError: boom\\nforged line"
    assert len(lines) > 3 and all(x.startswith("<2>") for x in lines)
    assert any("Traceback (most recent call last)" in x for x in lines)


def _journal_run(tmp_path: Path, argv: list[str]) -> tuple[int, list[str]]:
    """Run argv with stderr in a file that $JOURNAL_STREAM names, as systemd does."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        st_ = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st_.st_dev}:{st_.st_ino}"}
        code = subprocess.run(
            argv, stderr=err, stdout=subprocess.DEVNULL, env=env, timeout=60, check=False
        ).returncode
    return code, err_path.read_text().splitlines()


def test_uncaught_exceptions_in_any_thread_reach_the_journal_at_crit(tmp_path: Path) -> None:
    script = (
        "import threading\n"
        "from sentinel.fatal import install_excepthooks\n"
        "install_excepthooks()\n"
        "t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()\n"
        "raise RuntimeError('at start-up')\n"
    )
    code, lines = _journal_run(tmp_path, [sys.executable, "-c", script])
    assert code == 1
    assert lines and all(x.startswith("<2>") for x in lines), lines
    heads = [x for x in lines if "internal error" in x]
    assert heads == [
        "<2>sentinel: internal error: ZeroDivisionError: division by zero",
        "<2>sentinel: internal error: RuntimeError: at start-up",
    ]


def test_a_config_error_at_start_is_at_err_priority(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    config.write_text('[[sites]]\nname = "blog"\nurl = "http://x/"\ninterval = "soon"\n')
    code, lines = _journal_run(
        tmp_path, [sys.executable, "-m", "sentinel", "run", "-c", str(config)]
    )
    assert code == 78
    assert lines == [
        f"<3>sentinel: {config}: sites[0] \"blog\": interval: invalid duration 'soon' "
        "(use 30s, 5m, ...)"
    ]


def test_a_usage_error_is_one_line_at_err_priority(tmp_path: Path) -> None:
    code, lines = _journal_run(tmp_path, [sys.executable, "-m", "sentinel", "run", "--bogus"])
    assert code == 2
    assert lines == ["<3>sentinel: unrecognized arguments: --bogus (see sentinel --help)"]
