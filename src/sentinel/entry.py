"""The `sentinel` command's entry point: installs the journal-aware exception hooks (sentinel.fatal)
before anything else of sentinel is imported, so even an import error is filed at crit priority,
then runs the command line."""

from __future__ import annotations

from sentinel.fatal import install_excepthooks


def main() -> int:
    install_excepthooks()
    from sentinel.cli import main as cli_main

    return cli_main()
