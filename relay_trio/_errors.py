"""The exception tree of relay-trio.

Every error the package raises derives from :class:`RelayError`; errors of the
libraries underneath (redis-py, the operating system) are mapped to one of these
and chained (``raise ... from exc``), never leaked::

    RelayError
    ├── InvalidInput            bad input to an operation; nothing was written (a ValueError)
    ├── ConfigError             a setting out of its range or malformed (a ValueError)
    ├── JobNotFound             the job (or DLQ entry) named does not exist (a LookupError)
    ├── QueueNotFound           no such queue: never created, or deleted (a LookupError)
    ├── QueueNotEmpty           a queue still holding jobs was to be deleted without force
    ├── JobFinished             the job has already ended (done, dead or cancelled)
    ├── JobFailed               the job ended without a result: dead or cancelled
    ├── ResultTimeout           the job did not end in the time given (a TimeoutError)
    ├── DuplicateJob            an idempotency key already names a job (``existing_id``)
    ├── RedisUnavailable        Redis refused, did not answer, or is busy (a ConnectionError)
    │   └── RedisOutcomeUnknown the command was sent, no answer came: it may have run
    ├── RedisCommandError       Redis answered with an error (a bug, or a foreign key)
    ├── HubClosed               the hub is closed or not serving: no new subscription
    ├── NotServing              the broker or hub of an app not serving (a RuntimeError)
    ├── EmbeddedRedisError      the private redis-server could not be found or started
    ├── ListenError             the server cannot listen on its address (an OSError)
    ├── DemoFailure             the built-in demo handler failed a job on purpose
    └── Reject                  raised by a handler: dead-letter this job now, no retry

No message carries a secret: passwords in Redis URLs are masked (``***``).
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class of every error raised by relay-trio."""


class InvalidInput(RelayError, ValueError):
    """Input was rejected before anything was written to Redis.

    ``field`` names the offending argument (``"queue"``, ``"priority"``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(RelayError, ValueError):
    """A setting is out of its documented range, or malformed: raised when the
    object it configures is built (:class:`~relay_trio.WorkerConfig`,
    :class:`~relay_trio.QueueHandler`, :class:`~relay_trio.Worker`,
    :class:`~relay_trio.Broker`, the server's ``ServerConfig`` and its ``RELAY_*``
    variables), before anything runs.

    ``field`` names the setting (``"visibility_ms"``, ``"api_token"``, a
    variable's name ...), ``message`` says what is wrong with it; ``str()`` is
    ``"<field>: <message>"``. Input to an operation (a priority, a queue name)
    is :class:`InvalidInput` instead.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobNotFound(RelayError, LookupError):
    """The job named by ``queue`` and ``job_id`` does not exist where it was looked for."""

    def __init__(self, queue: str, job_id: str, where: str = "queue") -> None:
        super().__init__(
            f"job {job_id} not found in queue {queue!r}"
            if where == "queue"
            else f"job {job_id} not found in the {where} of queue {queue!r}"
        )
        self.queue = queue
        self.job_id = job_id
        self.where = where


class QueueNotFound(RelayError, LookupError):
    """``queue`` is not in the registry: no job ever created it, or it was deleted.

    Only creating a job registers a queue; pausing, rate-limiting or deleting an
    unknown queue raises this instead of registering it.
    """

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} not found")
        self.queue = queue


class QueueNotEmpty(RelayError):
    """``queue`` still holds ``jobs`` jobs (ready, in flight, delayed or dead), and
    it was to be deleted without ``force``. Nothing was deleted."""

    def __init__(self, queue: str, jobs: int) -> None:
        super().__init__(
            f"queue {queue!r} still holds {jobs} job(s); delete it with force to drop them"
        )
        self.queue = queue
        self.jobs = jobs


class JobFinished(RelayError):
    """The job has already ended (``done``, ``dead`` or ``cancelled``): it cannot be
    cancelled any more. ``state`` is where it ended."""

    def __init__(self, queue: str, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} in queue {queue!r} has already ended: {state}")
        self.queue = queue
        self.job_id = job_id
        self.state = state


class JobFailed(RelayError):
    """Waiting for a result, the job ended without one: ``state`` is ``dead`` (its
    attempts spent, or rejected) or ``cancelled``; ``last_error`` says why."""

    def __init__(self, queue: str, job_id: str, state: str, last_error: str) -> None:
        reason = f": {last_error}" if last_error else ""
        super().__init__(f"job {job_id} in queue {queue!r} ended {state}{reason}")
        self.queue = queue
        self.job_id = job_id
        self.state = state
        self.last_error = last_error


class ResultTimeout(RelayError, TimeoutError):
    """The job did not end within the time given; it may still."""

    def __init__(self, queue: str, job_id: str, state: str, timeout: float) -> None:
        super().__init__(
            f"job {job_id} in queue {queue!r} did not end within {timeout:g} s (it is {state})"
        )
        self.queue = queue
        self.job_id = job_id
        self.state = state


class DuplicateJob(RelayError):
    """An idempotency key is already taken; ``existing_id`` is the job that won it."""

    def __init__(self, queue: str, idempotency_key: str, existing_id: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} of queue {queue!r} "
            f"already names job {existing_id}"
        )
        self.queue = queue
        self.idempotency_key = idempotency_key
        self.existing_id = existing_id


class RedisUnavailable(RelayError, ConnectionError):
    """Redis could not be used: the connection was refused or timed out, the
    credentials were refused, the server at the address is not Redis, or Redis
    cannot take commands now (loading, read-only replica, out of memory, busy).

    Raised as itself, the command did not run. See :class:`RedisOutcomeUnknown`
    for a command that may have.
    """


class RedisOutcomeUnknown(RedisUnavailable):
    """The command was sent, but no answer came (a timeout, or the connection
    was lost): it may or may not have taken effect.

    Every state change is one atomic script, so it took effect entirely or not
    at all. An enqueue retried with the same idempotency key cannot add the job
    twice; acks, nacks and the rest are fenced by leases and safe to retry.
    """


class RedisCommandError(RelayError):
    """Redis answered a command with an error reply (or redis-py refused to send
    it): a bug, or a key of a foreign type under relay-trio's prefix."""


class HubClosed(RelayError):
    """The hub is shutting down, or not serving: it takes no new subscription.
    (Also importable as ``relay_trio.hub.HubClosed``.)"""


class NotServing(RelayError, RuntimeError):
    """The server's broker or hub was asked for outside its serving time: before
    the app's startup or after its shutdown."""


class EmbeddedRedisError(RelayError):
    """The private redis-server could not be found or did not start."""


class ListenError(RelayError, OSError):
    """The server could not listen on ``address`` (in use, not an address of this
    host, a name that does not resolve). ``errno`` is the operating system's."""

    def __init__(self, address: str, reason: OSError) -> None:
        detail = reason.strerror or str(reason) or type(reason).__name__
        super().__init__(reason.errno, f"cannot listen on {address}: {detail}")
        self.address = address

    def __str__(self) -> str:
        return str(self.strerror)


class DemoFailure(RelayError):
    """Raised on purpose by the built-in demo handler (``--handler demo``): the
    worker nacks the job with this text, as it would any handler's error."""


class Reject(RelayError):
    """Raised by a handler (or by the task registry for a job it cannot run: an
    unknown task name, a payload that is not a task call) to dead-letter the job
    at once, without further attempts; the message becomes its ``last_error``."""


def unwrap_group(exc: BaseException) -> BaseException:
    """``exc``, or the one exception that nested single-member groups wrap (a
    Trio nursery wraps whatever leaves it)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
