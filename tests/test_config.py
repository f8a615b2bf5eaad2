"""Configuration from one place (issue 10, part 2): :mod:`relay_trio.settings`.

Each setting is defined once (name, type, range, default, ``RELAY_*`` variable,
help); ``ServerConfig``, its ``from_env()``, the command line's flags and the
ASGI entry point all derive from that definition. Checked here, for every
setting: its variable round-trips; a value out of its range is refused at each
entry (``ServerConfig(...)``, ``from_env``, the flag, the variable, the ASGI
import) with a message naming the field or the variable; the help shows the
range and the variable. Nothing here needs Redis.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import relay_trio.server.serve as serve
from relay_trio import cli as climod
from relay_trio import settings, worker_config
from relay_trio._errors import ConfigError
from relay_trio.cli import commands
from relay_trio.cli.options import env_only_text
from relay_trio.demo_handler import make_demo_handler
from relay_trio.server import ServerConfig, create_app
from relay_trio.server.serve import serve_relay
from relay_trio.settings import Setting

ROOT = Path(__file__).resolve().parents[1]
DEAD_URL = "redis://127.0.0.1:1/0"

NUMBERS = [s for s in settings.ALL if s.range is not None]
SERVER_NUMBERS = [s for s in settings.SERVER if s.range is not None]
WITH_FLAG = [s for s in settings.ALL if s.flag is not None]

# A value for every setting that is not a number (a number's comes from its range),
# as the variable's text and as the value it gives.
SAMPLES: dict[str, tuple[str, object]] = {
    "redis_url": ("redis://example.invalid:6380/2", "redis://example.invalid:6380/2"),
    "prefix": ("other.prefix", "other.prefix"),
    "api_token": ("tök én-1", "tök én-1"),
    "metrics_token": ("m3trics", "m3trics"),
    "allowed_hosts": (" Relay.Example ,, [fd00::1],relay.example", ("relay.example", "fd00::1")),
    "read_only": ("Yes", True),
    "fleet": ("on", True),
    "host": ("[::1]", "::1"),
    "handler": ("handlers_for_tests:slow", "handlers_for_tests:slow"),
    "tasks": ("myapp.tasks:registry", "myapp.tasks:registry"),
    "no_schedules": ("on", True),
    "metrics_host": ("[::1]", "::1"),
    "log_format": ("json", "json"),
}

# A value that is no number's bad value: refused by each entry.
BAD_SAMPLES: dict[str, tuple[str, str]] = {  # name: (text, words of the reason)
    "redis_url": ("localhost:6379", "not a Redis URL"),
    "prefix": ("a{b}", "is not a key prefix"),
    "api_token": (" s3cret", "the API token starts or ends with a space"),
    "metrics_token": ("s3cret\x01", "the metrics token has a control character"),
    "allowed_hosts": ("ok.example,http://x", "allowed host 'http://x'"),
    "read_only": ("maybe", "not yes or no"),
    "fleet": ("sometimes", "not yes or no"),
    "host": ("999.1.1.1", "not an IP address or a host name"),
    "no_schedules": ("2", "not yes or no"),
    "metrics_host": ("999.1.1.1", "not an IP address or a host name"),
    "log_format": ("xml", "not a log format (choose kv or json)"),
}


def id_of(setting: Setting[Any]) -> str:
    return setting.name


def number_text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def in_range(setting: Setting[Any]) -> list[tuple[str, object]]:
    """Texts and values of ``setting`` in its range: its edges, and one between."""
    bounds = setting.range
    assert bounds is not None
    low = math.nextafter(bounds.low, math.inf) if bounds.exclude_low else bounds.low
    if bounds.kind is int:
        values: list[Any] = [low, bounds.high, (bounds.low + bounds.high) // 2]
    else:
        values = [float(low), float(bounds.high), (bounds.low + bounds.high) / 2]
    return [(number_text(v), v) for v in values]


def out_of_range(setting: Setting[Any]) -> list[object]:
    """Values of ``setting`` just outside its range (and a few far outside)."""
    bounds = setting.range
    assert bounds is not None
    if bounds.kind is int:
        return [bounds.low - 1, bounds.high + 1, -(10**30)]
    below = bounds.low if bounds.exclude_low else math.nextafter(bounds.low, -math.inf)
    return [below, math.nextafter(bounds.high, math.inf), float(bounds.high) * 10, -1e300]


# -- one definition ---------------------------------------------------------------


def test_server_config_has_a_field_per_server_setting_with_its_default() -> None:
    fields = dataclasses.fields(ServerConfig)
    assert [f.name for f in fields] == [s.name for s in settings.SERVER]
    for field, setting in zip(fields, settings.SERVER, strict=True):
        assert field.default == setting.default, field.name
    assert ServerConfig() == ServerConfig(**{s.name: s.default for s in settings.SERVER})


def test_each_variable_names_one_setting() -> None:
    variables = [s.env for s in settings.ALL]
    assert len(set(variables)) == len(variables)
    assert all(v.startswith("RELAY_") for v in variables)
    names = [s.name for s in settings.ALL]
    assert len(set(names)) == len(names)
    flags = [s.flag for s in WITH_FLAG]
    assert len(set(flags)) == len(flags)


def test_the_library_ranges_and_defaults_are_referenced_not_repeated() -> None:
    assert settings.CONCURRENCY.range is worker_config.CONCURRENCY
    assert settings.CONCURRENCY.range.high == worker_config.MAX_CONCURRENCY
    assert settings.JOB_TIMEOUT.range is worker_config.JOB_TIMEOUT
    ranges = worker_config.WORKER_CONFIG_RANGES
    assert settings.VISIBILITY_MS.range is ranges["visibility_ms"]
    assert settings.GRACE_PERIOD.range is ranges["grace_period"]
    library = worker_config.WorkerConfig()
    assert settings.VISIBILITY_MS.default == library.visibility_ms
    assert settings.GRACE_PERIOD.default == library.grace_period
    assert settings.CONCURRENCY.default == worker_config.QueueHandler("q", print).concurrency
    demo = inspect.signature(make_demo_handler).parameters
    assert settings.DEMO_FAIL_RATE.default == demo["fail_rate"].default
    assert settings.DEMO_SLEEP_MS.default == demo["sleep_ms"].default


def test_every_setting_has_a_sample_or_a_range() -> None:
    """So that a new setting is covered by the tests below."""
    assert {s.name for s in settings.ALL if s.range is None} == set(SAMPLES)
    # any text names a handler or a registry (which the worker then imports)
    assert set(BAD_SAMPLES) == set(SAMPLES) - {"handler", "tasks"}


# -- every setting round-trips from its variable --------------------------------------


@pytest.mark.parametrize("setting", settings.SERVER, ids=id_of)
def test_each_server_setting_round_trips_from_its_variable(setting: Setting[Any]) -> None:
    cases = in_range(setting) if setting.range else [SAMPLES[setting.name]]
    for text, value in cases:
        config = ServerConfig.from_env({setting.env: text})
        assert getattr(config, setting.name) == value, text
        assert type(getattr(config, setting.name)) is type(value)
        rest = {s.name: getattr(config, s.name) for s in settings.SERVER if s is not setting}
        assert rest == {s.name: s.default for s in settings.SERVER if s is not setting}
        # and the same value given in Python is the same config
        assert ServerConfig(**{setting.name: value}) == config


def test_an_empty_variable_counts_as_unset_and_an_override_wins() -> None:
    environ = {s.env: "" for s in settings.SERVER}
    assert ServerConfig.from_env(environ) == ServerConfig()
    environ = {"RELAY_POLL_INTERVAL": "0", "RELAY_API_TOKEN": " bad"}  # both ignored
    config = ServerConfig.from_env(environ, poll_interval=2.5, api_token="good", prefix=None)
    assert (config.poll_interval, config.api_token, config.prefix) == (2.5, "good", "relay")
    with pytest.raises(TypeError, match="no such setting: pol_interval"):
        ServerConfig.from_env({}, pol_interval=2)


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_STREAM_RETRY_MS", "5000")
    monkeypatch.setenv("RELAY_READ_ONLY", "off")
    config = ServerConfig.from_env()
    assert (config.stream_retry_ms, config.read_only) == (5000, False)
    assert create_app().extensions["relay"].config == config  # the app's default config


class Reached(Exception):
    """The command line was accepted: the verb would have started."""


@dataclass
class Run:
    code: int | str | None
    err: str
    args: argparse.Namespace | None


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``run(*argv, url=DEAD_URL, **env)``: :func:`relay_trio.cli.main` in this
    process (``--redis-url url`` first unless ``url`` is None) with only the given
    ``RELAY_*`` variables, the verbs replaced by a recorder; the server gets as
    far as its config (its arguments' ``config`` is the one it would serve)."""
    seen: list[argparse.Namespace] = []
    real_run_server, real_from_env = climod._run_server, ServerConfig.from_env

    def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    def run_server(args: argparse.Namespace) -> int:
        seen.append(args)
        return real_run_server(args)

    def from_env(*args: Any, **kwargs: Any) -> ServerConfig:
        seen[-1].config = real_from_env(*args, **kwargs)
        return seen[-1].config

    def reached() -> None:
        raise Reached

    for name in list(commands.COMMANDS):
        monkeypatch.setitem(commands.COMMANDS, name, record)
    monkeypatch.setattr(climod, "_run_server", run_server)
    monkeypatch.setattr(ServerConfig, "from_env", from_env)
    monkeypatch.setattr(serve, "tune_gc_for_streams", reached)

    def go(*argv: str, url: str | None = DEAD_URL, **env: str) -> Run:
        for var in [v for v in os.environ if v.startswith("RELAY_")]:
            monkeypatch.delenv(var)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        seen.clear()
        try:
            first = [] if url is None else ["--redis-url", url]
            code: int | str | None = climod.main([*first, *argv])
        except SystemExit as exc:
            code = exc.code
        except Reached:
            code = "reached"
        err = capsys.readouterr().err
        return Run(code, err, seen[-1] if seen else None)

    return go


def command_for(setting: Setting[Any]) -> tuple[str, ...]:
    return ("worker", "--queue", "q") if setting in settings.WORKER else ("server",)


def value_of(result: Run, setting: Setting[Any]) -> object:
    assert result.code in (0, "reached"), result.err
    assert result.args is not None
    if setting in settings.SERVER:
        return getattr(result.args.config, setting.name)
    return getattr(result.args, setting.name)


@pytest.mark.parametrize("setting", settings.LAUNCH + settings.WORKER, ids=id_of)
def test_each_command_setting_round_trips(run: Any, setting: Setting[Any]) -> None:
    cases = in_range(setting) if setting.range else [SAMPLES[setting.name]]
    for text, value in cases:
        assert value_of(run(*command_for(setting), **{setting.env: text}), setting) == value
        if setting.flag:  # the flag gives the same, and beats the variable
            flag = (setting.flag,) if isinstance(value, bool) else (setting.flag, text)
            given = run(*command_for(setting), *flag, **{setting.env: "junk"})
            assert value_of(given, setting) == value
    assert value_of(run(*command_for(setting)), setting) == setting.default


@pytest.mark.parametrize("setting", settings.SERVER, ids=id_of)
def test_the_server_command_reads_each_server_variable(run: Any, setting: Setting[Any]) -> None:
    text, value = in_range(setting)[-1] if setting.range else SAMPLES[setting.name]
    result = run("server", **{setting.env: text})
    if setting is settings.REDIS_URL:
        value = DEAD_URL  # the flag main() is given wins
    assert value_of(result, setting) == value


# -- every bad value is refused at every entry -------------------------------------------


def bad_cases(setting: Setting[Any]) -> list[tuple[object, str]]:
    """(value, words of the reason) that ``setting`` refuses."""
    if setting.range is not None:
        return [(value, f"must be {setting.range.bounds}") for value in out_of_range(setting)]
    text, words = BAD_SAMPLES[setting.name]
    return [(text, words)]


@pytest.mark.parametrize("setting", settings.SERVER, ids=id_of)
def test_server_config_refuses_each_bad_value_naming_the_field(setting: Setting[Any]) -> None:
    cases = bad_cases(setting)
    if setting.range is not None:
        wrong_kind = "1" if setting.range.kind is float else 1.0
        cases += [(wrong_kind, f"not a {setting.range.noun}"), (None, "not a")]
        if setting.range.kind is float:
            cases += [(math.nan, "not a finite number"), (math.inf, "not a finite number")]
    if setting in (settings.READ_ONLY, settings.FLEET):  # in Python, a bool
        cases = [("yes", "not True or False"), (1, "not True or False")]
    for value, words in cases:
        if setting is settings.ALLOWED_HOSTS:
            value = str(value).split(",")
        with pytest.raises(ConfigError) as caught:
            ServerConfig(**{setting.name: value})
        assert isinstance(caught.value, ValueError)
        assert str(caught.value).startswith(f"{setting.name}: "), caught.value
        assert words in str(caught.value)


@pytest.mark.parametrize("setting", settings.SERVER, ids=id_of)
def test_from_env_refuses_each_bad_variable_naming_it(setting: Setting[Any]) -> None:
    texts = [(number_text(v), w) for v, w in bad_cases(setting)]
    if setting.range is not None:
        texts += [("soon", f"not a {setting.range.noun}"), ("nan", "not a")]
    for text, words in texts:
        with pytest.raises(ConfigError) as caught:
            ServerConfig.from_env({setting.env: text})
        message = str(caught.value)
        assert message.startswith(f"{setting.env}: "), message
        assert words in message


@pytest.mark.parametrize("setting", NUMBERS, ids=id_of)
def test_the_command_line_refuses_each_bad_number(run: Any, setting: Setting[Any]) -> None:
    assert setting.range is not None
    for value in out_of_range(setting):
        text = number_text(value)
        from_env = run(*command_for(setting), **{setting.env: text})
        assert from_env.code == 2, (text, from_env.err)
        (line,) = from_env.err.splitlines()
        assert f"{setting.env}: must be {setting.range.bounds}, got {text}" in line
        if setting.flag:
            from_flag = run(*command_for(setting), f"{setting.flag}={text}")
            assert from_flag.code == 2, (text, from_flag.err)
            (line,) = from_flag.err.splitlines()
            assert f"argument {setting.flag}: must be {setting.range.bounds}, got " in line


@pytest.mark.parametrize("name", sorted(BAD_SAMPLES))
def test_the_command_line_refuses_each_bad_text(run: Any, name: str) -> None:
    setting = next(s for s in settings.ALL if s.name == name)
    text, words = BAD_SAMPLES[name]
    argv = ("stats",) if setting in settings.CONNECTION else command_for(setting)
    from_env = run(*argv, url=None, **{setting.env: text})
    assert from_env.code == 2, from_env.err
    (line,) = from_env.err.splitlines()
    assert f"{setting.env}: " in line and words in line
    assert setting.flag is not None
    switch = isinstance(setting.default, bool)  # a flag without a value
    from_flag = run(*argv, url=None) if switch else None
    if not switch:
        from_flag = run(*argv, setting.flag, text, url=None)
        assert from_flag.code == 2, from_flag.err
        (flag_line,) = from_flag.err.splitlines()
        assert f"argument {setting.flag}: " in flag_line and words in flag_line
    if setting in (settings.REDIS_URL, settings.API_TOKEN, settings.METRICS_TOKEN):
        assert text.strip() not in from_env.err + (from_flag.err if from_flag else "")


def test_a_secret_is_never_shown() -> None:
    for token in (" s3cret", "s3cret\n"):
        with pytest.raises(ConfigError) as caught:
            ServerConfig(api_token=token)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(ConfigError) as caught:
            ServerConfig.from_env({"RELAY_METRICS_TOKEN": token})
        assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_env({"RELAY_REDIS_URL": "redis://:hunter2@127.0.0.1:99999/0"})
    assert "hunter2" not in str(caught.value) and "Port out of range" in str(caught.value)


def test_the_issue_s_busy_loop_is_refused() -> None:
    """``ServerConfig(poll_interval=0)`` made the hub busy-loop; now it is refused."""
    with pytest.raises(ConfigError, match=r"^poll_interval: must be at least 0\.05 and"):
        ServerConfig(poll_interval=0)
    assert ServerConfig(poll_interval=0.05).poll_interval == 0.05


# -- the ASGI entry point fails at once ------------------------------------------------


def import_asgi(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    code = "import relay_trio.server.asgi as m; print(m.config)"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("var", "text", "words"),
    [
        ("RELAY_POLL_INTERVAL", "0", "must be at least 0.05 and at most 3,600, got 0"),
        ("RELAY_KEEPALIVE_INTERVAL", "soon", "not a number, got soon"),
        ("RELAY_MAX_PAYLOAD_BYTES", "1e6", "not a whole number, got 1e6"),
        ("RELAY_API_TOKEN", " s3cret", "the API token starts or ends with a space"),
        ("RELAY_READ_ONLY", "maybe", "not yes or no"),
    ],
)
def test_the_asgi_entry_point_fails_fast_naming_the_variable(
    var: str, text: str, words: str
) -> None:
    began = time.monotonic()
    result = import_asgi(**{var: text})
    assert time.monotonic() - began < 20
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"relay-trio: bad configuration: {var}: {words}")
    assert "s3cret" not in result.stderr


def test_the_asgi_entry_point_takes_good_variables() -> None:
    result = import_asgi(RELAY_POLL_INTERVAL="0.25", RELAY_ALLOWED_HOSTS="relay.example")
    assert result.returncode == 0, result.stderr
    assert "poll_interval=0.25" in result.stdout
    assert "allowed_hosts=('relay.example',)" in result.stdout


def test_hypercorn_with_a_bad_variable_stops_at_once() -> None:
    """The documented launch: Hypercorn's worker fails to load the app and
    Hypercorn stops (its exit status is 0 even then: Hypercorn 0.18 loses it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    began = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "hypercorn", "--worker-class", "trio"),
            *("--bind", "127.0.0.1:0", "relay_trio.server.asgi:app"),
        ],
        env={**clean, "RELAY_POLL_INTERVAL": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - began < 20
    message = "relay-trio: bad configuration: RELAY_POLL_INTERVAL: must be at least 0.05"
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the help says each range and variable -----------------------------------------------


@pytest.mark.parametrize("setting", WITH_FLAG, ids=id_of)
def test_help_shows_each_flag_s_range_variable_and_default(
    setting: Setting[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    verb = "worker" if setting in settings.WORKER else "server"
    with pytest.raises(SystemExit):
        climod.main([verb, "--help"])
    options = " ".join(capsys.readouterr().out.split()).split(" options: ", 1)[1]
    entry = options[options.index(f"{setting.flag} ") :]
    assert " ".join(setting.describe().split()) in entry
    assert f"(env {setting.env}, default {setting.default_text})" in entry
    if setting.range is not None:
        assert setting.range.bounds in entry


def test_help_shows_the_settings_set_by_environment_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        climod.main(["server", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    only = [s for s in settings.SERVER if s.flag is None]
    assert only  # there are some
    for setting in only:
        assert " ".join(env_only_text(setting).split()) in text


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (settings.POLL_INTERVAL, "at least 0.05 and at most 3,600 (env RELAY_POLL_INTERVAL, "
         "default 1)"),
        (settings.PORT, "at least 0 and at most 65,535 (env RELAY_PORT, default 8,000)"),
        (settings.CONCURRENCY, "at least 1 and at most 10,000 (env RELAY_CONCURRENCY, "
         "default 10)"),
        (settings.JOB_TIMEOUT, "more than 0 and at most 604,800 (env RELAY_JOB_TIMEOUT, "
         "default none: no timeout)"),
        (settings.READ_ONLY, "(env RELAY_READ_ONLY, default off)"),
    ],
    ids=["poll_interval", "port", "concurrency", "job_timeout", "read_only"],
)  # fmt: skip
def test_a_few_help_texts_word_for_word(setting: Setting[Any], words: str) -> None:
    assert setting.describe().endswith(words)


# -- serve_relay takes a config or an app ---------------------------------------------


async def test_serve_relay_takes_a_config_or_an_app_not_both() -> None:
    config = ServerConfig(redis_url=DEAD_URL)
    with pytest.raises(TypeError, match="not both"):
        await serve_relay(config=config, app=create_app(config))
    with pytest.raises(TypeError, match="not neither"):
        await serve_relay()
    with pytest.raises(TypeError):
        await serve_relay(config)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("port", 65536, "port: must be at least 0 and at most 65,535, got 65536"),
        ("host", "999.1.1.1", "host: not an IP address or a host name"),
        ("graceful_timeout", -1.0, "graceful_timeout: must be at least 0"),
        ("keep_alive_timeout", 0, "keep_alive_timeout: must be at least 0.1"),
    ],
)
async def test_serve_relay_refuses_a_bad_launch_setting(
    option: str, value: object, words: str
) -> None:
    with trio.fail_after(5), pytest.raises(ConfigError, match=words):
        await serve_relay(config=ServerConfig(redis_url=DEAD_URL), **{option: value})
