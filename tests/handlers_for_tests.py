"""Handlers importable by worker subprocesses (``--handler handlers_for_tests:NAME``).

Worker subprocesses started by the tests get ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import trio

from relay_trio.job import Job


async def slow(job: Job) -> None:
    """Never finishes in a test's lifetime: the job stays in flight until the worker dies."""
    await trio.sleep(3600)
