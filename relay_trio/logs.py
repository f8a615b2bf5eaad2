"""Log lines, one per event: ``key=value`` fields (the default) or JSON lines.

Every ``relay-trio`` command logs through the ``relay_trio`` logger (INFO and
up: INFO on stdout, WARNING and up on stderr, see :func:`setup`), formatted by
:class:`KeyValueFormatter` (``--log-format kv``) or :class:`JsonFormatter`
(``--log-format json``)::

    ts=2025-01-02T03:04:05.678Z level=warning logger=relay_trio.worker event=job.retry
      queue=emails job=5f0c... attempt=2 max_retries=5 cause=error delay_ms=734
      error="ValueError: bad address\\n  File ..." msg="job failed: retry in 0.734 s"

(one line: the break above is for this page) and, in JSON::

    {"ts": "2025-01-02T03:04:05.678Z", "level": "warning", "logger": "relay_trio.worker",
     "event": "job.retry", "queue": "emails", "job": "5f0c...", "attempt": 2, ...,
     "msg": "job failed: retry in 0.734 s"}

Fields come first after ``ts``, ``level`` and ``logger``: ``event`` (what
happened, e.g. ``job.retry``), then the job's ``queue``, ``job`` (its id) and
``attempt`` for a job's event (:func:`event`), then the event's own fields;
``msg`` (the text for people) comes last, then ``exc`` (a traceback) if any.
A value is written bare when it is made of letters, digits and ``. _ : / @ + -``
only; anything else (a space, a quote, ``=``, a line break, any control or
line-separating character) is written as a JSON string (double quotes,
backslash escapes), so that every record stays one line that splits on
spaces outside quotes. A record that carries no fields (a plain ``log.info``)
has ``msg`` only.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

FORMATS = ("kv", "json")
FIELDS_ATTR = "relay_fields"
"""The attribute of a :class:`logging.LogRecord` that holds its fields."""

_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")
_KEY = re.compile(r"[^A-Za-z0-9_.\-]")
# characters that end a line for some reader (str.splitlines among them) and
# that json.dumps leaves alone: escaped too
_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x7F, 0x85, 0x2028, 0x2029)}
_RESERVED = ("ts", "level", "logger", "msg", "exc")


class JobLike(Protocol):
    @property
    def queue(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def attempts(self) -> int: ...


def fields(event_name: str, job: JobLike | None = None, **more: object) -> dict[str, Any]:
    """The ``extra`` of a log call that records ``event_name`` (with ``job``'s
    queue, id and attempt) and ``more`` fields."""
    found: dict[str, object] = {"event": event_name}
    if job is not None:
        found["queue"], found["job"], found["attempt"] = job.queue, job.id, job.attempts
    found.update(more)
    return {FIELDS_ATTR: found}


def event(
    logger: logging.Logger,
    level: int,
    event_name: str,
    msg: str,
    *args: object,
    job: JobLike | None = None,
    **more: object,
) -> None:
    """Log ``msg % args`` at ``level`` as event ``event_name`` with its fields
    (nothing is built when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra=fields(event_name, job, **more))


def record_fields(record: logging.LogRecord) -> Mapping[str, object]:
    found = getattr(record, FIELDS_ATTR, None)
    return found if isinstance(found, Mapping) else {}


def timestamp(created: float) -> str:
    """``2025-01-02T03:04:05.678Z``: ISO 8601, UTC, milliseconds."""
    seconds = math.floor(created)
    millis = min(999, int((created - seconds) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def quote(text: str) -> str:
    """``text`` as a JSON string, with every line-breaking character escaped."""
    return json.dumps(text, ensure_ascii=False).translate(_LINE_BREAKS)


def kv_value(value: object) -> str:
    """One value as ``key=value`` writes it (see the module doc)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if _BARE.fullmatch(text) else quote(text)


def _key(name: object) -> str:
    key = _KEY.sub("_", str(name)) or "_"
    return f"field_{key}" if key in _RESERVED else key


def _parts(formatter: logging.Formatter, record: logging.LogRecord) -> list[tuple[str, object]]:
    parts: list[tuple[str, object]] = [
        ("ts", timestamp(record.created)),
        ("level", record.levelname.lower()),
        ("logger", record.name),
    ]
    parts += [(_key(k), v) for k, v in record_fields(record).items()]
    parts.append(("msg", record.getMessage()))
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(("exc", record.exc_text))
    if record.stack_info:
        parts.append(("stack", formatter.formatStack(record.stack_info)))
    return parts


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... key=value ... msg="..."``: see the module doc."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={kv_value(v)}" for k, v in _parts(self, record))


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same keys as :class:`KeyValueFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        body = {k: _json_safe(v) for k, v in _parts(self, record)}
        return json.dumps(body, ensure_ascii=False).translate(_LINE_BREAKS)


def formatter(name: str) -> logging.Formatter:
    """The formatter of log format ``name`` (one of :data:`FORMATS`)."""
    if name == "json":
        return JsonFormatter()
    if name == "kv":
        return KeyValueFormatter()
    raise ValueError(f"log format {name!r}: choose one of {', '.join(FORMATS)}")


class _Ours(logging.StreamHandler[TextIO]):
    """A handler :func:`setup` installed (and may reformat). Without a stream of
    its own it writes to ``sys.<name>`` as it is at each record, so that a
    stream replaced since (a test's capture, since closed) is never written to."""

    def __init__(self, name: str, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._name, self._own = name, stream

    @property
    def stream(self) -> TextIO:
        return self._own if self._own is not None else getattr(sys, self._name)

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # set by StreamHandler.__init__ (and setStream): the stream is chosen above


def setup(
    log_format: str = "kv", *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> None:
    """relay-trio's own log lines in ``log_format``: INFO on ``stdout`` (with the
    command's other messages for people), WARNING and up on ``stderr``. Called
    again, it changes the format of the handlers it installed; a program that
    put handlers of its own on the ``relay_trio`` logger keeps them untouched."""
    logger = logging.getLogger("relay_trio")
    form = formatter(log_format)
    if logger.handlers:
        for handler in logger.handlers:
            if isinstance(handler, _Ours):
                handler.setFormatter(form)
        return
    info, problems = _Ours("stdout", stdout), _Ours("stderr", stderr)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    problems.setLevel(logging.WARNING)
    for handler in (info, problems):
        handler.setFormatter(form)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class DropJobEvents(logging.Filter):
    """Leaves out the records of job events (``event=job.*``): the demo's display
    would drown in its own deliberate failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record_fields(record).get("event")
        return not (isinstance(name, str) and name.startswith("job."))


def parse_kv(line: str) -> dict[str, str]:
    """A ``key=value`` line back into its fields (values as text; quoted ones
    decoded): for tests and tools. Raises ValueError for a malformed line."""
    out: dict[str, str] = {}
    decoder = json.JSONDecoder()
    pos, end = 0, len(line)
    while pos < end:
        eq = line.index("=", pos)
        key = line[pos:eq]
        if not key or " " in key:
            raise ValueError(f"malformed key at {pos}: {line[pos:eq]!r}")
        if eq + 1 < end and line[eq + 1] == '"':
            value, stop = decoder.raw_decode(line, eq + 1)
        else:
            stop = line.find(" ", eq + 1)
            stop = end if stop < 0 else stop
            value = line[eq + 1 : stop]
        out[key] = str(value)
        if stop < end and line[stop] != " ":
            raise ValueError(f"no space after the value of {key!r}")
        pos = stop + 1
    return out


__all__ = [
    "FORMATS",
    "DropJobEvents",
    "JsonFormatter",
    "KeyValueFormatter",
    "event",
    "fields",
    "formatter",
    "parse_kv",
    "setup",
]
