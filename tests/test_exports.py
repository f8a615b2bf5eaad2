"""The public surface: ``__all__`` is sorted and names exactly what the package
exports; the keyword options of its entry points are typed and agree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable

import relay_trio
import relay_trio.aio
import relay_trio.sync
from relay_trio import Broker, JobSpec, RedisIO, RelayClient, _errors, open_broker, open_client
from relay_trio.job import EnqueueOptions


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
    """Every setting is written out, typed, in each signature that takes it, and
    every enqueue takes its options as ``**options: Unpack[EnqueueOptions]``, one
    TypedDict whose keys are :meth:`JobSpec.create`'s: none may drift apart."""
    connect, settings = keywords(RedisIO.from_url), keywords(Broker.__init__)
    assert keywords(Broker.from_url) == connect | settings
    assert keywords(open_broker) == keywords(Broker.from_url)
    assert keywords(open_client) == keywords(Broker.from_url)
    for client in (relay_trio.sync.Client, relay_trio.aio.Client):
        own = keywords(client.__init__)
        assert set(own) <= set(connect) | set(settings), client
        assert all(own[k] == (connect | settings)[k] for k in own), client
    options = set(EnqueueOptions.__optional_keys__)
    assert options <= set(keywords(JobSpec.create))
    takers = (Broker.spec, Broker.enqueue, Broker.enqueue_strict, RelayClient.enqueue)
    takers += (RelayClient.enqueue_many, relay_trio.sync.Client.enqueue)
    takers += (relay_trio.sync.Client.enqueue_many, relay_trio.aio.Client.enqueue)
    takers += (relay_trio.aio.Client.enqueue_many,)
    for fn in takers:
        (var,) = [p for p in inspect.signature(fn).parameters.values() if p.kind is p.VAR_KEYWORD]
        assert var.annotation == "Unpack[EnqueueOptions]", fn
    for fn in (Broker.__init__, Broker.from_url, open_broker, open_client):
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
