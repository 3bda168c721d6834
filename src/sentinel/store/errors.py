"""The store's one error type: every SQLite failure (full disk, I/O error, locked) becomes one."""

from __future__ import annotations


class StoreError(Exception):
    """The state store cannot be opened, read or written. The message is one human-readable line."""


class StoreNotFoundError(StoreError):
    """`open_readonly` found no database: the daemon has not run with this state_dir yet."""
