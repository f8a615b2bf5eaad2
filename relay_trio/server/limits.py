"""The API's limits, in one place: :mod:`.api` enforces them, :mod:`.openapi` states them.

Most are the broker's own (it checks them too): jobs per bulk request, the DLQ
page, rate limits. :data:`MAX_BULK_BYTES` is the server's own.
"""

from __future__ import annotations

from ..broker import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    MAX_DLQ_OFFSET,
    MAX_ENQUEUE_MANY,
    RATE_MAX,
    RATE_MIN,
)

MAX_BULK_BYTES = 64 * 1024 * 1024
"""A bulk request may carry at most this many payload bytes in all (413 beyond)."""

__all__ = [
    "BURST_MAX",
    "DLQ_PAGE_DEFAULT",
    "DLQ_PAGE_MAX",
    "MAX_BULK_BYTES",
    "MAX_DLQ_OFFSET",
    "MAX_ENQUEUE_MANY",
    "RATE_MAX",
    "RATE_MIN",
]
