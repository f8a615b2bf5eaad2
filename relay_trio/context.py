"""The job a handler is running, for code deep inside it: :func:`current_job`.

The worker wraps every handler call in :func:`job_context` (the task registry's
handlers do too), which sets a :mod:`contextvars` variable for the duration
of the call. The variable follows the work wherever Trio carries the context:

- into the handler's own task, and any task it starts in a nursery it opens
  (Trio copies the context into a new task when it is spawned);
- into the thread of ``trio.to_thread.run_sync`` started from inside the
  context (Trio runs the function in a copy of the caller's context): a plain
  function handler, which runs in a thread, sees its job too.

A thread started some other way (``threading.Thread``) does not inherit the
context, and there :func:`current_job` raises, as it does outside any handler.
No I/O happens here.
"""

from __future__ import annotations

import contextvars
from types import TracebackType

from ._errors import NotServing
from .job import Job

__all__ = ["JobContext", "current_job", "job_context"]

_current: contextvars.ContextVar[Job] = contextvars.ContextVar("relay_trio.current_job")


def current_job() -> Job:
    """The job whose handler is running in this context (its task, or a thread
    started for it with ``trio.to_thread.run_sync``).

    Raises :class:`~relay_trio.NotServing` when no handler is running here.
    """
    try:
        return _current.get()
    except LookupError:
        raise NotServing("current_job() is only available while a job's handler runs") from None


class JobContext:
    """Sets the current job on entry, restores the previous value on exit.

    One instance is entered once: build a new one for each handler call (with
    :func:`job_context`). Contexts nest (the inner job wins until it exits);
    exits must happen in the task (or thread) that entered, in reverse order,
    as ``with`` guarantees.
    """

    __slots__ = ("_job", "_token")

    def __init__(self, job: Job) -> None:
        self._job = job
        self._token: contextvars.Token[Job] | None = None

    def __enter__(self) -> Job:
        if self._token is not None:
            raise RuntimeError("a JobContext is entered once; make a new one per call")
        self._token = _current.set(self._job)
        return self._job

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            _current.reset(token)


def job_context(job: Job) -> JobContext:
    """``with job_context(job): await handler(job)``: :func:`current_job` returns
    ``job`` inside the block (and in threads ``trio.to_thread.run_sync`` starts
    from it), and whatever it returned before (or nothing) after."""
    return JobContext(job)
