"""The task registry (relay_trio.tasks) and the current job (relay_trio.context).

No Redis here: producers are in-test fakes that record what they were asked to
enqueue, and handlers are called with jobs built in memory.
"""

from __future__ import annotations

import enum
import importlib
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Unpack

import pytest
import trio

from relay_trio import ConfigError, InvalidInput, Job, JobState
from relay_trio._errors import NotServing, Reject
from relay_trio.context import current_job, job_context
from relay_trio.job import EnqueueOptions
from relay_trio.tasks import TaskRegistry, encode_task_call, load_registry


def make_job(payload: bytes, queue: str = "q") -> Job:
    return Job(
        id=uuid.uuid4().hex,
        queue=queue,
        payload=payload,
        state=JobState.INFLIGHT,
        attempts=1,
        max_retries=5,
        priority=0,
        created_at_ms=0,
    )


Call = tuple[str, bytes | str, dict[str, object]]


class FakeAsyncProducer:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def enqueue(
        self, queue: str, payload: bytes | str, /, **options: Unpack[EnqueueOptions]
    ) -> str:
        await trio.lowlevel.checkpoint()
        self.calls.append((queue, payload, dict(options)))
        return f"id-{len(self.calls)}"


class FakeSyncProducer:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def enqueue(
        self, queue: str, payload: bytes | str, /, **options: Unpack[EnqueueOptions]
    ) -> str:
        self.calls.append((queue, payload, dict(options)))
        return f"sync-{len(self.calls)}"


@pytest.fixture
def tasks() -> TaskRegistry:
    return TaskRegistry()


# --- the current job ---------------------------------------------------------------


def test_current_job_outside_a_handler_raises() -> None:
    with pytest.raises(NotServing, match=r"current_job\(\) is only available while"):
        current_job()


def test_job_context_sets_nests_and_resets() -> None:
    outer, inner = make_job(b"1"), make_job(b"2")
    with job_context(outer) as entered:
        assert entered is outer
        assert current_job() is outer
        with job_context(inner):
            assert current_job() is inner
        assert current_job() is outer
    with pytest.raises(NotServing):
        current_job()


def test_job_context_resets_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError), job_context(make_job(b"")):
        1 / 0  # noqa: B018
    with pytest.raises(NotServing):
        current_job()


def test_a_job_context_is_entered_once() -> None:
    context = job_context(make_job(b""))
    with context, pytest.raises(RuntimeError, match="entered once"), context:
        pass


async def test_current_job_in_a_to_thread_thread_and_a_child_task() -> None:
    job = make_job(b"")
    seen: list[Job] = []

    async def child() -> None:
        seen.append(current_job())

    with job_context(job):
        in_thread = await trio.to_thread.run_sync(current_job)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    assert in_thread is job
    assert seen == [job]
    with pytest.raises(NotServing):
        await trio.to_thread.run_sync(current_job)


def test_a_plain_thread_does_not_inherit_the_job() -> None:
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            current_job()
        except NotServing as exc:
            errors.append(exc)

    with job_context(make_job(b"")):
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
    assert len(errors) == 1


# --- the decorator -----------------------------------------------------------------


async def test_decorated_functions_stay_callable(tasks: TaskRegistry) -> None:
    @tasks.task("math")
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    @tasks.task("math", name="mul.async")
    async def mul(a: int, b: int) -> int:
        return a * b

    assert add(2, 3) == 5
    assert await mul(2, 3) == 6
    assert (add.name, add.queue, add.is_async) == ("add", "math", False)
    assert (mul.name, mul.is_async) == ("mul.async", True)
    assert add.__name__ == "add" and add.__doc__ == "Adds."
    assert add.__wrapped__ is add.fn
    assert "add" in tasks and "mul" not in tasks and len(tasks) == 2
    assert tasks.get("mul.async") is mul and tasks.get("nope") is None
    assert list(tasks) == [add, mul]
    assert repr(add) == "<Task 'add' on queue 'math'>"


def test_default_queue_and_no_options(tasks: TaskRegistry) -> None:
    @tasks.task()
    def ping() -> str:
        return "pong"

    assert ping.queue == "default"
    assert ping.options == {}
    assert ping.timeout is None


def test_decorator_options_become_enqueue_options(tasks: TaskRegistry) -> None:
    @tasks.task("q", timeout=1.5, max_retries=0, priority=255)
    def a() -> None: ...

    @tasks.task("q", timeout=0.0001)
    def b() -> None: ...

    @tasks.task("q", timeout=0.3, priority=0)
    def c() -> None: ...

    @tasks.task("q", timeout=7 * 24 * 3600)
    def d() -> None: ...

    assert a.options == {"timeout_ms": 1500, "max_retries": 0, "priority": 255}
    assert a.timeout == 1.5
    assert b.options == {"timeout_ms": 1}  # never rounded down to "no time at all"
    assert c.options == {"timeout_ms": 300, "priority": 0}
    assert d.options == {"timeout_ms": 7 * 24 * 3600 * 1000}
    a.options["priority"] = 1  # a copy
    assert a.options["priority"] == 255


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 7 * 24 * 3600 + 1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1001}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"priority": 256}, "priority"),
        ({"priority": -1}, "priority"),
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"queue": "bad queue"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"queue": ".."}, "queue"),
        ({"queue": 5}, "queue"),
    ],
)
def test_bad_decorator_options_are_config_errors(
    tasks: TaskRegistry, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        tasks.task(**kwargs)
    assert info.value.field == field
    assert len(tasks) == 0


def test_bare_decorator_is_refused_with_a_hint(tasks: TaskRegistry) -> None:
    def f() -> None: ...

    with pytest.raises(ConfigError, match=r"with \(\)") as info:
        tasks.task(f)  # type: ignore[arg-type]
    assert info.value.field == "queue"


def test_nameless_and_generator_functions(tasks: TaskRegistry) -> None:
    with pytest.raises(ConfigError, match="pass name=") as info:
        tasks.task("q")(lambda: 1)
    assert info.value.field == "name"
    named = tasks.task("q", name="one")(lambda: 1)
    assert named() == 1

    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for fn in (gen, agen):
        with pytest.raises(ConfigError, match="generator") as info:
            tasks.task("q")(fn)
        assert info.value.field == "task"
    with pytest.raises(ConfigError) as info:
        tasks.task("q")(named)
    assert info.value.field == "task"
    assert list(tasks) == [named]


def test_duplicate_names_are_refused(tasks: TaskRegistry) -> None:
    @tasks.task("a")
    def send() -> None: ...

    def other_send() -> None: ...

    other_send.__name__ = "send"
    with pytest.raises(ConfigError, match=r"'send' is already registered .*test_tasks") as info:
        tasks.task("b")(other_send)
    assert info.value.field == "name"
    assert tasks.task("b", name="send2")(other_send).name == "send2"
    assert TaskRegistry().task("a")(other_send).name == "send"  # another registry is fine


# --- payloads ----------------------------------------------------------------------


class Color(enum.StrEnum):
    RED = "red"


def test_payload_is_compact_utf8_json(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    def f(a: Any, b: Any = None, *rest: Any, **extra: Any) -> None: ...

    assert f.payload(1, b=2) == b'{"task":"f","args":[1],"kwargs":{"b":2}}'
    assert f.payload("é", (1, [2.5, None]), True, Color.RED, x={"k": "ü"}) == (
        '{"task":"f","args":["é",[1,[2.5,null]],true,"red"],"kwargs":{"x":{"k":"ü"}}}'.encode()
    )
    assert encode_task_call("g") == b'{"task":"g","args":[],"kwargs":{}}'


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((b"raw",), {}, "args[0] is of type bytes, which JSON cannot encode"),
        ((1, {2, 3}), {}, "args[1] is of type set"),
        ((), {"when": [0, {"at": object()}]}, "kwargs['when'][1]['at'] is of type object"),
        ((float("nan"),), {}, "args[0] is nan"),
        ((), {"x": float("-inf")}, "kwargs['x'] is -inf"),
        (({1: "a"},), {}, "args[0] has a key of type int (1)"),
        (("\ud800",), {}, "lone surrogate"),
        ((10**5000,), {}, "cannot be encoded as JSON"),
    ],
)
def test_arguments_json_cannot_carry_are_refused(
    tasks: TaskRegistry, args: tuple[Any, ...], kwargs: dict[str, Any], words: str
) -> None:
    @tasks.task("q")
    def f(*args: Any, **kwargs: Any) -> None: ...

    with pytest.raises(InvalidInput) as info:
        f.payload(*args, **kwargs)
    assert info.value.field == "args"
    assert words in info.value.message


def test_circular_and_too_deep_arguments_are_refused(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    def f(x: Any) -> None: ...

    loop: list[Any] = []
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    for value in (loop, deep):
        with pytest.raises(InvalidInput, match="nests more than 100 deep"):
            f.payload(value)
    fine: list[Any] = []
    for _ in range(50):
        fine = [fine]
    assert f.payload(fine).startswith(b'{"task":"f","args":[[[[')


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"b": 2, "c": 3}, "unexpected keyword argument 'c'"),
        ((), {"a": 1, "b": 2}, "'a' parameter is positional only"),
    ],
)
def test_calls_that_do_not_fit_the_signature_are_refused(
    tasks: TaskRegistry, args: tuple[Any, ...], kwargs: dict[str, Any], words: str
) -> None:
    @tasks.task("q")
    def add(a: int, /, b: int) -> int:
        return a + b

    with pytest.raises(InvalidInput) as info:
        add.payload(*args, **kwargs)
    assert info.value.field == "args"
    assert info.value.message.startswith("add(a, /, b): ")
    assert words in info.value.message


# --- enqueue -----------------------------------------------------------------------


async def test_enqueue_through_an_async_producer(tasks: TaskRegistry) -> None:
    @tasks.task("emails", timeout=2, max_retries=3)
    async def send(to: str, subject: str = "") -> None: ...

    producer = FakeAsyncProducer()
    assert await send.enqueue(producer, "a@example.com", subject="hi") == "id-1"
    assert producer.calls == [
        (
            "emails",
            b'{"task":"send","args":["a@example.com"],"kwargs":{"subject":"hi"}}',
            {"timeout_ms": 2000, "max_retries": 3},
        )
    ]
    with pytest.raises(InvalidInput):
        await send.enqueue(producer, "a", "b", "c")  # type: ignore[call-arg]
    assert len(producer.calls) == 1  # nothing was enqueued


def test_enqueue_sync_through_a_blocking_producer(tasks: TaskRegistry) -> None:
    @tasks.task("q", priority=7)
    def add(a: int, b: int) -> int:
        return a + b

    producer = FakeSyncProducer()
    assert add.enqueue_sync(producer, 1, b=2) == "sync-1"
    assert producer.calls == [("q", b'{"task":"add","args":[1],"kwargs":{"b":2}}', {"priority": 7})]


async def test_a_task_may_have_a_parameter_called_client(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    def connect(client: str) -> None: ...

    producer = FakeAsyncProducer()
    await connect.enqueue(producer, client="x")
    assert producer.calls[0][1] == b'{"task":"connect","args":[],"kwargs":{"client":"x"}}'


async def test_with_options_merges_over_the_tasks_options(tasks: TaskRegistry) -> None:
    @tasks.task("q", priority=1, max_retries=2)
    def f(x: int) -> None: ...

    bound = f.with_options(priority=9, delay_ms=500, idempotency_key="k")
    assert bound.options == {
        "priority": 9,
        "max_retries": 2,
        "delay_ms": 500,
        "idempotency_key": "k",
    }
    assert f.options == {"priority": 1, "max_retries": 2}  # the task is unchanged
    again = bound.with_options(delay_ms=0, timeout_ms=None)
    assert again.options["delay_ms"] == 0 and again.options["timeout_ms"] is None
    assert bound.options["delay_ms"] == 500

    producer, sync_producer = FakeAsyncProducer(), FakeSyncProducer()
    await bound.enqueue(producer, 5)
    bound.enqueue_sync(sync_producer, x=6)
    assert producer.calls == [("q", b'{"task":"f","args":[5],"kwargs":{}}', bound.options)]
    assert sync_producer.calls == [("q", b'{"task":"f","args":[],"kwargs":{"x":6}}', bound.options)]
    with pytest.raises(InvalidInput, match="missing a required argument"):
        bound.enqueue_sync(sync_producer)  # type: ignore[call-arg]
    assert "BoundTask 'f'" in repr(bound)


def test_with_options_refuses_unknown_option_names(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    def f() -> None: ...

    bogus: dict[str, Any] = {"prio": 1}
    with pytest.raises(InvalidInput, match="is not an enqueue option") as info:
        f.with_options(**bogus)
    assert info.value.field == "prio"


# --- the worker side ---------------------------------------------------------------


def test_queues_and_handlers(tasks: TaskRegistry) -> None:
    for queue, name in [("b", "x"), ("a", "y"), ("b", "z")]:
        tasks.task(queue, name=name)(lambda: None)
    assert tasks.queues() == ["a", "b"]
    assert sorted(tasks.handlers()) == ["a", "b"]
    with pytest.raises(ConfigError, match="no task of this registry runs on queue 'c'"):
        tasks.handler("c")
    with pytest.raises(ConfigError) as info:
        tasks.handler("bad queue")
    assert info.value.field == "queue"
    assert TaskRegistry().handlers() == {}


async def test_an_async_task_runs_with_its_job_current(tasks: TaskRegistry) -> None:
    seen: list[Job] = []

    @tasks.task("q")
    async def add(a: int, b: int) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        seen.append(current_job())
        return {"sum": a + b}

    job = make_job(add.payload(1, b=2))
    handler = tasks.handler("q")
    assert await handler(job) == {"sum": 3}
    assert seen == [job]


async def test_a_plain_task_runs_in_a_thread_with_its_job_current(tasks: TaskRegistry) -> None:
    seen: list[tuple[Job, int]] = []

    @tasks.task("q")
    def add(a: int, b: int) -> int:
        seen.append((current_job(), threading.get_ident()))
        return a + b

    job = make_job(add.payload(2, 3))
    assert await tasks.handler("q")(job) == 5
    assert seen == [(job, seen[0][1])]
    assert seen[0][1] != threading.get_ident()


async def test_args_and_kwargs_may_be_left_out(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    async def ping(word: str = "pong") -> str:
        return word

    handler = tasks.handler("q")
    assert await handler(make_job(b'{"task":"ping"}')) == "pong"
    assert await handler(make_job(b'{"task":"ping","kwargs":{"word":"hi"}}')) == "hi"


async def test_what_a_task_raises_passes_through(tasks: TaskRegistry) -> None:
    @tasks.task("q")
    async def fails() -> None:
        raise ValueError("nope")

    @tasks.task("q")
    def refuses() -> None:
        raise Reject("bad job")

    handler = tasks.handler("q")
    with pytest.raises(ValueError, match="nope"):
        await handler(make_job(fails.payload()))
    with pytest.raises(Reject, match="bad job"):
        await handler(make_job(refuses.payload()))


async def test_tasks_registered_after_the_handler_are_found(tasks: TaskRegistry) -> None:
    tasks.task("q", name="first")(lambda: 1)
    handler = tasks.handler("q")
    tasks.task("q", name="second")(lambda: 2)
    assert await handler(make_job(b'{"task":"second"}')) == 2


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b"", "not JSON"),
        (b'{"task":"add","args":[NaN,1]}', "NaN is not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"add"', "JSON str, not an object"),
        (b'{"task":"add","args":[1,2],"extra":1}', "unexpected key(s) ['extra']"),
        (b'{"args":[1,2]}', '"task" must be a string'),
        (b'{"task":1}', '"task" must be a string'),
        (b'{"task":"add","args":{"a":1}}', '"args" must be a JSON array'),
        (b'{"task":"add","args":[1],"kwargs":[2]}', '"kwargs" must be a JSON object'),
        (b'{"task":"nope"}', "unknown task 'nope'"),
        (b'{"task":"elsewhere"}', "task 'elsewhere' runs on queue 'other', not 'q'"),
        (b'{"task":"add","args":[1]}', "missing a required argument: 'b'"),
        (b'{"task":"add","args":[1,2,3]}', "too many positional arguments"),
        (b'{"task":"add","args":[1],"kwargs":{"b":2,"c":3}}', "unexpected keyword argument"),
        (b'{"task":"sync_add","args":[1]}', "arguments do not fit sync_add(a, b): missing"),
    ],
)
async def test_jobs_the_registry_cannot_run_are_rejected(
    tasks: TaskRegistry, payload: bytes, words: str
) -> None:
    ran: list[str] = []

    @tasks.task("q")
    async def add(a: int, b: int) -> int:
        ran.append("add")
        return a + b

    @tasks.task("q")
    def sync_add(a: int, b: int) -> int:
        ran.append("sync_add")
        return a + b

    @tasks.task("other")
    async def elsewhere() -> None:
        ran.append("elsewhere")

    with pytest.raises(Reject) as info:
        await tasks.handler("q")(make_job(payload))
    assert words in str(info.value)
    assert ran == []


async def test_reject_messages_stay_short(tasks: TaskRegistry) -> None:
    tasks.task("q", name="t")(lambda: None)
    long_name = json.dumps({"task": "x" * 100_000}).encode()
    with pytest.raises(Reject) as info:
        await tasks.handler("q")(make_job(long_name))
    assert len(str(info.value)) < 300


async def test_a_cancelled_thread_task_is_abandoned(tasks: TaskRegistry) -> None:
    """At a timeout the handler returns at once; the thread finishes later, unheard."""
    release, finished = threading.Event(), threading.Event()

    @tasks.task("q")
    def slow() -> str:
        release.wait(10)
        finished.set()
        return "late"

    with trio.move_on_after(0.05) as scope:
        await tasks.handler("q")(make_job(slow.payload()))
    assert scope.cancelled_caught
    assert not finished.is_set()
    release.set()
    assert await trio.to_thread.run_sync(finished.wait, 10)


async def test_a_cancelled_async_task_is_cancelled(tasks: TaskRegistry) -> None:
    state: list[str] = []

    @tasks.task("q")
    async def slow() -> None:
        try:
            await trio.sleep_forever()
        finally:
            state.append("cancelled")

    with trio.move_on_after(0.01) as scope:
        await tasks.handler("q")(make_job(slow.payload()))
    assert scope.cancelled_caught
    assert state == ["cancelled"]


# --- load_registry -----------------------------------------------------------------


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Writes a module of the given source on a temporary sys.path entry; its
    (unique) name. It leaves sys.modules as it found it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"relay_tasks_test_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


REGISTRY_SOURCE = """
import types
from relay_trio.tasks import TaskRegistry

registry = TaskRegistry()
ns = types.SimpleNamespace(inner=registry)
not_a_registry = {"a": 1}

@registry.task("emails")
def send(to: str) -> None: ...
"""


def test_load_registry_finds_the_registry(make_module: Callable[[str], str]) -> None:
    name = make_module(REGISTRY_SOURCE)
    registry = load_registry(f"{name}:registry")
    assert isinstance(registry, TaskRegistry)
    assert registry.queues() == ["emails"]
    assert load_registry(f"{name}:ns.inner") is registry
    assert registry is sys.modules[name].registry


@pytest.mark.parametrize(
    "spec", ["", "nocolon", ":registry", "mod:", "mod:a-b", "1mod:x", "a..b:x", "mod:x:y"]
)
def test_load_registry_refuses_malformed_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="is not module:attribute") as info:
        load_registry(spec)
    assert info.value.field == "tasks"


@pytest.mark.parametrize(
    ("source", "attribute", "words"),
    [
        (REGISTRY_SOURCE, "missing", "has no attribute 'missing'"),
        (REGISTRY_SOURCE, "ns.missing", "has no attribute 'ns.missing'"),
        (REGISTRY_SOURCE, "not_a_registry", "is a dict, not a TaskRegistry"),
        (
            "raise RuntimeError('boom\\nsecond line')",
            "registry",
            "failed: RuntimeError: boom",
        ),
        ("def broken(:\n", "registry", "failed: SyntaxError: "),
        (
            "import relay_no_such_dependency_xyz",
            "registry",
            "failed: ModuleNotFoundError: No module named 'relay_no_such_dependency_xyz'",
        ),
    ],
)
def test_load_registry_explains_what_went_wrong(
    make_module: Callable[[str], str], source: str, attribute: str, words: str
) -> None:
    name = make_module(source)
    with pytest.raises(ConfigError) as info:
        load_registry(f"{name}:{attribute}")
    assert info.value.field == "tasks"
    assert words in info.value.message
    assert "\n" not in str(info.value)


def test_load_registry_names_a_missing_module() -> None:
    for spec, missing in [
        ("relay_no_such_module_xyz:registry", "relay_no_such_module_xyz"),
        ("relay_no_such_pkg_xyz.tasks:registry", "relay_no_such_pkg_xyz"),
        ("relay_trio.no_such_module:registry", "relay_trio.no_such_module"),
    ]:
        with pytest.raises(ConfigError, match=f"no module named '{missing}'") as info:
            load_registry(spec)
        assert info.value.field == "tasks"
