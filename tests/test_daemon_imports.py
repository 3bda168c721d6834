"""What `sentinel run` keeps loaded for good: no module it never uses. Each of these cost the
daemon ~0.3 MiB (html's table of named references, statistics' exact fractions and decimals,
shutil's bz2 and lzma, which argparse loads to find the terminal's width; zoneinfo's sysconfig
for a page shown in UTC)."""

from __future__ import annotations

import subprocess
import sys

NEVER_USED = ("html", "html.entities", "statistics", "fractions", "decimal", "shutil", "bz2")
# and with the page in UTC (the default), no time zone database: zoneinfo imports sysconfig
ONLY_FOR_OTHER_ZONES = ("zoneinfo", "sysconfig")

CODE = """
import sys
import sentinel.cli
sentinel.cli.build_parser().format_help()
import sentinel.daemon
from sentinel.zones import zone
zone("UTC")
print(" ".join(sorted(sys.modules)))
"""


def test_the_daemon_does_not_load_modules_it_never_uses() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", CODE], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert "sentinel.daemon" in loaded
    assert [m for m in NEVER_USED + ONLY_FOR_OTHER_ZONES if m in loaded] == []
