"""The states a webhook delivery is shown in (a module of its own: the CLI names them in its
options without loading the delivery machinery)."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, or being sent
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up
