"""What `sentinel run` keeps loaded for good: no module it never uses. Each of these cost the
daemon ~0.3 MiB (html's table of named references, statistics' exact fractions and decimals,
shutil's bz2 and lzma, which argparse loads to find the terminal's width)."""

from __future__ import annotations

import subprocess
import sys

NEVER_USED = ("html", "html.entities", "statistics", "fractions", "decimal", "shutil", "bz2")

CODE = """
import sys
import sentinel.cli
sentinel.cli.build_parser().format_help()
import sentinel.daemon
print(" ".join(sorted(sys.modules)))
"""


def test_the_daemon_does_not_load_modules_it_never_uses() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", CODE], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert "sentinel.daemon" in loaded
    assert [m for m in NEVER_USED if m in loaded] == []
