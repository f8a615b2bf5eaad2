"""The built-in demo handler: sleeps a little, fails at a configurable rate.

``relay-trio worker --handler demo`` uses it; ``--demo-fail-rate`` and
``--demo-sleep-ms`` (or ``RELAY_DEMO_FAIL_RATE`` / ``RELAY_DEMO_SLEEP_MS``) set it up.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from ._errors import ConfigError, DemoFailure
from ._setting import Range
from ._validate import in_range
from .job import Job

FAIL_RATE = Range(float, 0.0, 1.0)
"""The share of jobs the demo handler fails."""
SLEEP_MS = Range(float, 0.0, 3_600_000.0)
"""How long it works on a job, in ms: up to an hour."""


def make_demo_handler(
    fail_rate: float = 0.05, sleep_ms: float = 20.0
) -> Callable[[Job], Awaitable[None]]:
    """An async handler that sleeps ~``sleep_ms`` (uniform 0.5x-1.5x) and raises
    :class:`DemoFailure` for a ``fail_rate`` share of the jobs."""
    in_range("fail_rate", fail_rate, FAIL_RATE, error=ConfigError)
    in_range("sleep_ms", sleep_ms, SLEEP_MS, error=ConfigError)

    async def demo_handler(job: Job) -> None:
        await trio.sleep(sleep_ms * random.uniform(0.5, 1.5) / 1000)
        if random.random() < fail_rate:
            raise DemoFailure(f"demo failure on attempt {job.attempts} (fail rate {fail_rate:g})")

    return demo_handler


__all__ = ["DemoFailure", "make_demo_handler"]
