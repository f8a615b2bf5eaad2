"""The public surface: ``__all__`` is sorted and names exactly what the package
exports; the keyword options of its entry points are typed and agree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable

import relay_trio
from relay_trio import Broker, JobSpec, RedisIO, RelayClient, _errors, open_broker, open_client


def test_all_is_sorted_and_complete() -> None:
    assert relay_trio.__all__ == sorted(relay_trio.__all__)
    for name in relay_trio.__all__:
        assert hasattr(relay_trio, name), name
    public = {n for n in vars(relay_trio) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(relay_trio, n)).__name__ == "module"}
    assert public - modules == set(relay_trio.__all__)


def keywords(fn: Callable[..., object]) -> dict[str, tuple[object, object]]:
    """The keyword-only parameters of ``fn``: name -> (annotation, default)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: (p.annotation, p.default) for p in params if p.kind is p.KEYWORD_ONLY}


def test_keyword_options_are_typed_and_agree() -> None:
    """Every option is written out, typed, in each signature that takes it: these
    must not drift apart (and none takes ``**options``)."""
    connect, settings = keywords(RedisIO.from_url), keywords(Broker.__init__)
    assert keywords(Broker.from_url) == connect | settings
    assert keywords(open_broker) == keywords(Broker.from_url)
    assert keywords(open_client) == keywords(Broker.from_url)
    job = keywords(Broker.enqueue)
    for fn in (Broker.spec, Broker.enqueue_strict, RelayClient.enqueue):
        assert keywords(fn) == job, fn
    shared = {k: v for k, v in job.items() if k not in ("idempotency_key", "job_id")}
    assert keywords(RelayClient.enqueue_many) == shared
    assert set(job) <= set(keywords(JobSpec.create))
    public = (Broker.__init__, Broker.from_url, open_broker, open_client, Broker.spec)
    public += (Broker.enqueue, Broker.enqueue_strict, RelayClient.enqueue, RelayClient.enqueue_many)
    for fn in public:
        kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, fn


INTERNAL_ERRORS = {"relay_trio._setting.BadValue"}
"""Exceptions that never leave the package: a refused value's reason, which
every caller turns into a ConfigError (or an argparse error) naming the setting."""


def test_every_error_of_the_package_is_a_relay_error_in_the_tree() -> None:
    found = set()
    for info in pkgutil.walk_packages(relay_trio.__path__, "relay_trio."):
        if info.name.endswith(("__main__", ".asgi")):  # they run things when imported
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and f"{value.__module__}.{value.__qualname__}" not in INTERNAL_ERRORS
            ):
                found.add(value)
    assert found, "no exception classes found"
    strays = sorted(c.__qualname__ for c in found if not issubclass(c, relay_trio.RelayError))
    assert strays == []
    tree = (_errors.__doc__ or "").split("::", 1)[1]
    drawn = re.findall(r"[├└]── (\w+)", tree)
    in_errors = {c.__name__ for c in found if c.__module__ == _errors.__name__}
    assert sorted(drawn) == sorted(in_errors - {"RelayError"})  # one line per class
