"""The one error a delivery channel raises, so the outbox can decide whether to retry."""

from __future__ import annotations


class SendError(Exception):
    """Delivery failed. `permanent` (e.g. SMTP 5xx) means retrying the same message is pointless."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
