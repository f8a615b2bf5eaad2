"""Tasks: Python functions enqueued by name, with their arguments as JSON.

A :class:`TaskRegistry` collects functions decorated with :meth:`TaskRegistry.task`::

    tasks = TaskRegistry()

    @tasks.task(queue="emails", timeout=30, max_retries=3)
    async def send_email(to: str, subject: str = "") -> None: ...

    job_id = await send_email.enqueue(client, "a@example.com", subject="hi")

**The payload** is the compact UTF-8 JSON ``{"task": name, "args": [...], "kwargs":
{...}}``, which any producer in any language may enqueue. Arguments must be JSON:
``str``, ``int``, ``float`` (finite), ``bool``, ``None``, ``list``/``tuple`` (a tuple
arrives as a list), ``dict`` with ``str`` keys; subclasses (a ``StrEnum``) go as their
base value. Anything else, or a call that does not fit the function's signature, is
refused at enqueue (:class:`~relay_trio.InvalidInput`, field ``"args"``): a wrong
call fails in the producer, not on the worker.

**The name** of a task is ``name=``, or else the function's ``__name__`` (never its
module: the name must not depend on how the module was imported, ``__main__`` or by
its package). A second task of the same name in one registry is refused
(:class:`~relay_trio.ConfigError`). Names: 1-200 of ``A-Z a-z 0-9 _ . : -``.

**On the worker**, :meth:`TaskRegistry.handlers` gives one async handler per queue
(``relay-trio worker --tasks module:registry``; :func:`load_registry`). A handler
decodes the payload, finds the task, calls it inside
:func:`~relay_trio.context.job_context` (so ``current_job()`` works in it) and returns
its return value (the job's result). A payload that is not a task call, an unknown
task, a task of another queue, or arguments that do not fit the function raise
:class:`~relay_trio.Reject` (dead-letter now); what the task raises passes through.

An ``async def`` task is awaited in the worker's task (cancelled at its timeout or
abort). A plain function runs in ``trio.to_thread.run_sync(...,
abandon_on_cancel=True)``: a thread cannot be cancelled, so at a timeout or abort the
handler returns (cancelled) at once and the worker decides the job's state; the
thread runs on in the background and its late return value (or error) is discarded.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, Unpack

from . import job as jobmod
from ._errors import ConfigError, InvalidInput, Reject
from ._validate import check_int, check_number
from .context import job_context
from .job import EnqueueOptions, Job

__all__ = ["AsyncProducer", "BoundTask", "SyncProducer", "Task", "TaskHandler", "TaskRegistry"]
__all__ += ["encode_task_call", "load_registry"]

P = ParamSpec("P")
R = TypeVar("R")

TaskHandler = Callable[[Job], Awaitable[object]]
"""A queue's handler, as :meth:`TaskRegistry.handler` makes it: async, takes the job,
returns the task's return value."""

TASK_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
MAX_ARG_DEPTH = 100
"""How deep arguments may nest (lists in dicts in lists ...); deeper (or circular) is refused."""
_CALL_KEYS = frozenset({"task", "args", "kwargs"})
_OPTION_NAMES = frozenset(EnqueueOptions.__annotations__)


class AsyncProducer(Protocol):
    """What :meth:`Task.enqueue` needs: an async ``enqueue`` returning the job's id
    (:class:`~relay_trio.RelayClient` is one)."""

    async def enqueue(
        self, queue: str, payload: bytes | str, /, **options: Unpack[EnqueueOptions]
    ) -> str: ...


class SyncProducer(Protocol):
    """What :meth:`Task.enqueue_sync` needs: a blocking ``enqueue`` returning the job's id."""

    def enqueue(
        self, queue: str, payload: bytes | str, /, **options: Unpack[EnqueueOptions]
    ) -> str: ...


_Problem = tuple[str, list[object]]
"""Why an argument cannot go as JSON, and the keys to it (innermost first)."""


def _json_problem(value: object, depth: int) -> _Problem | None:
    if isinstance(value, str | int) or value is None:  # bool is an int
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (f"is {value!r}, which JSON cannot carry", [])
    items: Iterable[tuple[object, object]]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return f"has a key of type {type(key).__name__} ({_short(repr(key))})", []
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        why = f"is of type {type(value).__qualname__}, which JSON cannot encode "
        return why + "(use str, int, float, bool, None, list, tuple, or dict with str keys)", []
    if depth >= MAX_ARG_DEPTH:
        return f"nests more than {MAX_ARG_DEPTH} deep (or is circular)", []
    for key, item in items:
        problem = _json_problem(item, depth + 1)
        if problem is not None:
            problem[1].append(key)
            return problem
    return None


def encode_task_call(
    name: str, args: tuple[Any, ...] | list[Any] = (), kwargs: dict[str, Any] | None = None
) -> bytes:
    """The payload of a call of task ``name``: ``{"task", "args", "kwargs"}`` as compact
    UTF-8 JSON. Arguments JSON cannot carry raise :class:`InvalidInput` (``"args"``)
    naming where they are (``args[1]['when']``). The signature is not checked here
    (:meth:`Task.payload` does)."""
    kwargs = {} if kwargs is None else kwargs
    for root, value in (("args", args), ("kwargs", kwargs)):
        problem = _json_problem(value, 0)
        if problem is not None:
            why, path = problem
            where = root + "".join(f"[{_short(repr(key))}]" for key in reversed(path))
            raise InvalidInput("args", f"{where} {why}")
    call = {"task": name, "args": list(args), "kwargs": kwargs}
    try:
        text = json.dumps(call, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidInput(
            "args", "a string holds a lone surrogate, which UTF-8 cannot encode"
        ) from None
    except ValueError as exc:  # an int too long to print, say
        raise InvalidInput("args", f"cannot be encoded as JSON: {exc}") from None


class BoundTask(Generic[P, R]):
    """A task with enqueue options (:meth:`Task.with_options`; a :class:`Task` is one
    with its own): :meth:`enqueue` and :meth:`enqueue_sync` take the task's
    arguments, type-checked against the function's parameters."""

    def __init__(self, task: Task[P, R], options: EnqueueOptions) -> None:
        self.task = task
        self._options = options

    def __repr__(self) -> str:
        return f"<BoundTask {self.task.name!r} on queue {self.task.queue!r} {self._options}>"

    @property
    def options(self) -> EnqueueOptions:
        """A copy of the enqueue options (a task's: those its decorator set)."""
        return self._options.copy()

    async def enqueue(self, client: AsyncProducer, /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue a call of the task on its queue with these options; the job's id."""
        payload = self.task.payload(*args, **kwargs)
        return await client.enqueue(self.task.queue, payload, **self._options)

    def enqueue_sync(self, client: SyncProducer, /, *args: P.args, **kwargs: P.kwargs) -> str:
        """:meth:`enqueue` through a synchronous (blocking) client."""
        payload = self.task.payload(*args, **kwargs)
        return client.enqueue(self.task.queue, payload, **self._options)

    def with_options(self, **options: Unpack[EnqueueOptions]) -> BoundTask[P, R]:
        """The task with ``options`` over these (``delay_ms``, ``idempotency_key``,
        ``priority`` ...). An unknown option name raises :class:`InvalidInput`;
        values are checked by the client at enqueue."""
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            names = ", ".join(sorted(_OPTION_NAMES))
            raise InvalidInput(unknown[0], f"is not an enqueue option (they are: {names})")
        merged = self._options.copy()
        merged.update(options)
        return BoundTask(self.task, merged)


class Task(BoundTask[P, R]):
    """A registered function. Calling it calls the function (an ``async def`` one
    returns its coroutine); :meth:`enqueue` / :meth:`enqueue_sync` enqueue a call
    of it instead.

    ``name``, ``queue``, ``fn`` and ``timeout`` (seconds or ``None``) are as
    registered; ``options`` are the enqueue options the decorator set."""

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str,
        timeout: float | None = None,
        options: EnqueueOptions | None = None,
    ) -> None:
        super().__init__(self, {} if options is None else options.copy())
        self.fn = fn
        self.name = name
        self.queue = queue
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004
        )
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: calls are not checked
            self.signature = None
        self.shown = name + _plain(self.signature)
        """``name(a, /, b=...)``: the call's shape, in error messages."""
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} on queue {self.queue!r}>"

    def payload(self, *args: P.args, **kwargs: P.kwargs) -> bytes:
        """The job payload of this call (see :func:`encode_task_call`); a call that
        does not fit the function's signature raises :class:`InvalidInput` (``"args"``)."""
        if self.signature is not None:
            try:
                self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidInput("args", f"{self.shown}: {exc}") from None
        return encode_task_call(self.name, args, kwargs)


class TaskRegistry:
    """Tasks by name. Producers use the tasks; workers use :meth:`handlers`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[..., Any]] = {}

    def __repr__(self) -> str:
        return f"<TaskRegistry: {len(self._tasks)} task(s) on queues {self.queues()}>"

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task[..., Any]]:
        return iter(list(self._tasks.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def get(self, name: str) -> Task[..., Any] | None:
        """The task called ``name``, or ``None``."""
        return self._tasks.get(name)

    def task(
        self,
        queue: str = "default",
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        priority: int | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register the decorated function (``async def`` or plain) as a task on ``queue``.

        ``name``: see the module doc (default: the function's ``__name__``).
        ``timeout``: seconds one attempt may run, more than 0 and at most a week
        (sent as ``timeout_ms``; ``None``: the worker's default). ``max_retries``
        0-1000 and ``priority`` 0-255 (``None``: the client's defaults). Each is a
        :class:`ConfigError` naming the option when out of range, as is a duplicate name.
        """
        if callable(queue):
            raise ConfigError("queue", "write @tasks.task() or @tasks.task(queue=...), with ()")
        queue = _config_queue(queue)
        options: EnqueueOptions = {}
        if timeout is not None:
            high = jobmod.MAX_TIMEOUT_MS / 1000
            timeout = check_number("timeout", timeout, 0, high, above=True, error=ConfigError)
            options["timeout_ms"] = max(1, round(timeout * 1000))
        if max_retries is not None:
            options["max_retries"] = check_int(
                "max_retries", max_retries, 0, jobmod.MAX_RETRIES_LIMIT, error=ConfigError
            )
        if priority is not None:
            options["priority"] = check_int(
                "priority", priority, jobmod.PRIORITY_MIN, jobmod.PRIORITY_MAX, error=ConfigError
            )
        if name is not None:
            _check_name(name, "")

        def register(fn: Callable[P, R]) -> Task[P, R]:
            if isinstance(fn, Task) or not callable(fn):
                raise ConfigError("task", f"{_short(repr(fn))} is not a function to register")
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                raise ConfigError("task", f"{fn!r} is a generator; a task returns its result")
            task_name = name
            if task_name is None:
                task_name = _check_name(getattr(fn, "__name__", None), " (pass name=...)")
            if task_name in self._tasks:
                other = self._tasks[task_name].fn
                where = f"{getattr(other, '__module__', '?')}.{getattr(other, '__qualname__', '?')}"
                raise ConfigError(
                    "name",
                    f"a task named {task_name!r} is already registered ({where}); "
                    "give one of them name=...",
                )
            task = Task(fn, name=task_name, queue=queue, timeout=timeout, options=options)
            self._tasks[task_name] = task
            return task

        return register

    def queues(self) -> list[str]:
        """The queues the tasks run on, sorted."""
        return sorted({t.queue for t in self._tasks.values()})

    def handlers(self) -> dict[str, TaskHandler]:
        """:meth:`handler` for each of :meth:`queues`."""
        return {queue: self.handler(queue) for queue in self.queues()}

    def handler(self, queue: str) -> TaskHandler:
        """The async handler of ``queue``'s jobs (see the module doc). A queue no
        task runs on is a :class:`ConfigError`. Tasks registered later are found too."""
        queue = _config_queue(queue)
        if queue not in self.queues():
            raise ConfigError("queue", f"no task of this registry runs on queue {queue!r}")
        tasks = self._tasks

        async def handle(job: Job) -> object:
            name, args, kwargs = _decode_call(job.payload)
            task = tasks.get(name)
            if task is None:
                raise Reject(f"unknown task {_short(repr(name))}: no task of that name here")
            if task.queue != job.queue:
                raise Reject(f"task {name!r} runs on queue {task.queue!r}, not {job.queue!r}")
            if task.signature is not None:
                try:
                    task.signature.bind(*args, **kwargs)
                except TypeError as exc:
                    raise Reject(f"arguments do not fit {task.shown}: {exc}") from None
            with job_context(job):
                if task.is_async:
                    return await task.fn(*args, **kwargs)
                import trio  # here: producers (sync, asyncio) import this module without Trio

                call = functools.partial(task.fn, *args, **kwargs)
                return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

        handle.__qualname__ = handle.__name__ = f"tasks_of_{queue}"
        return handle


def _decode_call(payload: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    """``(name, args, kwargs)`` of a task call's payload; :class:`Reject` if it is none."""
    try:
        call = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # a UnicodeDecodeError is a ValueError
        raise Reject(f"the payload is not a task call: not JSON ({_short(str(exc))})") from None
    if not isinstance(call, dict):
        raise Reject(
            f"the payload is not a task call: JSON {type(call).__name__}, "
            'not an object {"task", "args", "kwargs"}'
        )
    extra = sorted(call.keys() - _CALL_KEYS)
    if extra:
        raise Reject(f"the payload is not a task call: unexpected key(s) {_short(str(extra))}")
    name, args, kwargs = call.get("task"), call.get("args", []), call.get("kwargs", {})
    if not isinstance(name, str):
        raise Reject('the payload is not a task call: "task" must be a string (a task name)')
    if not isinstance(args, list):
        raise Reject(f'task {_short(repr(name))}: "args" must be a JSON array')
    if not isinstance(kwargs, dict):
        raise Reject(f'task {_short(repr(name))}: "kwargs" must be a JSON object')
    return name, args, kwargs


def _plain(signature: inspect.Signature | None) -> str:
    """The parameters without annotations (which may be unevaluated strings)."""
    if signature is None:
        return "(...)"
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=params, return_annotation=empty))


def _no_constant(word: str) -> object:
    raise ValueError(f"{word} is not JSON")


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_name(name: object, hint: str) -> str:
    if not isinstance(name, str) or not TASK_NAME_RE.fullmatch(name):
        raise ConfigError(
            "name",
            f"{_short(repr(name))} is not a task name: use 1-200 characters of "
            f"A-Z a-z 0-9 _ . : -{hint}",
        )
    return name


def _config_queue(queue: object) -> str:
    try:
        return jobmod.validate_queue_name(queue)
    except InvalidInput as exc:
        raise ConfigError("queue", exc.message) from None


def load_registry(spec: str) -> TaskRegistry:
    """The :class:`TaskRegistry` that ``spec`` (``"package.module:attribute"``, the
    attribute may be dotted) names, importing the module. ``sys.path`` is used as it
    is. Every failure is a one-line :class:`ConfigError` (field ``"tasks"``): a
    malformed spec, a module that is missing or fails to import (and why), a missing
    attribute, or one that is not a registry."""
    module_name, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    dotted = module_name.split(".") + attr.split(".")
    if not sep or not all(part.isidentifier() for part in dotted):
        raise ConfigError(
            "tasks", f"{_short(repr(spec))} is not module:attribute (e.g. myapp.tasks:registry)"
        )
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                "tasks",
                f"no module named {exc.name!r} (is it installed, or its directory on PYTHONPATH?)",
            ) from None
        raise ConfigError("tasks", _import_failed(module_name, exc)) from None
    except Exception as exc:
        raise ConfigError("tasks", _import_failed(module_name, exc)) from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError("tasks", f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(found, TaskRegistry):
        raise ConfigError("tasks", f"{spec} is a {type(found).__qualname__}, not a TaskRegistry")
    return found


def _import_failed(module_name: str, exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"importing {module_name!r} failed: {_short(detail, 300)}"
