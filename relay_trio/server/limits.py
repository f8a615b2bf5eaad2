"""The API's limits, in one place: :mod:`.api` enforces them, :mod:`.openapi` states them.

Most are the broker's own (it checks them too): jobs per bulk request, the DLQ
page, the job lists, rate limits. :data:`MAX_BULK_BYTES` and
:data:`LIST_PAYLOAD_BYTES` are the server's own.
"""

from __future__ import annotations

from ..broker import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    JOBS_PAGE_DEFAULT,
    JOBS_PAGE_MAX,
    LISTED_STATES,
    MAX_DLQ_OFFSET,
    MAX_ENQUEUE_MANY,
    RATE_MAX,
    RATE_MIN,
)

MAX_BULK_BYTES = 64 * 1024 * 1024
"""A bulk request may carry at most this many payload bytes in all (413 beyond)."""
LIST_PAYLOAD_BYTES = 1024
"""A job list (``GET /api/queues/{q}/jobs``) shows at most this many bytes of each
payload (cut at a character boundary); the single-job endpoint shows it whole."""

__all__ = [
    "BURST_MAX",
    "DLQ_PAGE_DEFAULT",
    "DLQ_PAGE_MAX",
    "JOBS_PAGE_DEFAULT",
    "JOBS_PAGE_MAX",
    "LISTED_STATES",
    "LIST_PAYLOAD_BYTES",
    "MAX_BULK_BYTES",
    "MAX_DLQ_OFFSET",
    "MAX_ENQUEUE_MANY",
    "RATE_MAX",
    "RATE_MIN",
]
