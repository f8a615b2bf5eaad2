"""Named cron schedules: their validation, stored form and fire times. No I/O here.

A :class:`Schedule` says "enqueue ``payload`` on ``queue`` at every time ``cron``
matches, read on the wall clock of ``timezone``". Every worker runs the
scheduler (:mod:`relay_trio.scheduler`); :meth:`Schedule.idempotency_key` makes
each fire time's job unique fleet-wide, and :meth:`Schedule.due_fire_ms` is the
policy for fire times that went by while nothing ran: they coalesce into one
run, at the latest of them (never a burst).

Cron expressions are parsed and evaluated by ``cronsim``, not by hand: it is
small, typed, dependency-free and actively maintained (it serves Healthchecks),
works on ``zoneinfo`` directly, matches Debian cron on DST transitions and takes
an optional seconds field. ``croniter`` changed hands (now under pallets-eco),
needs ``python-dateutil`` and ships no type hints, so it lost.

Cron forms (fields separated by spaces):

* 5 fields, ``minute hour day-of-month month day-of-week``: standard cron,
  e.g. ``*/5 * * * *``, ``30 2 * * MON-FRI``, ``0 0 L * *`` (last day of month),
  ``0 9 * * MON#1`` (first Monday).
* 6 fields, ``second minute hour day-of-month month day-of-week``: the seconds
  field comes **first** (as in Quartz), e.g. ``*/15 * * * * *`` every 15 s.

Daylight saving time: times are local to ``timezone``. A 5-field expression
that names a specific minute and hour (``30 2 * * *``) follows Debian cron: a
local time skipped by the spring jump fires right after the jump (03:00), one
repeated in autumn fires once, on its first occurrence. Expressions firing more
often (``*/30 * * * *``) and 6-field ones fire at each instant whose local wall
clock matches: every real 30 minutes across the change; a 6-field daily time in
the skipped hour does not fire that day, one in the repeated hour fires twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from cronsim import CronSim, CronSimError

from ._errors import InvalidInput
from ._validate import check_int
from .job import validate_payload, validate_priority, validate_queue_name

SCHEDULE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
TIMEZONE_RE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
MAX_CRON_LEN = 256
MAX_TIMEZONE_LEN = 64
MIN_TIME_MS = 0
MAX_TIME_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp()) * 1000
"""Fire-time arithmetic takes times from the Unix epoch to the year 9000 (ms)."""

_NOT_ZONES = frozenset({"localtime", "posixrules"})  # files of a tz directory, not zone names
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)  # "does it ever fire": looked for from here
_FIELD_FORMS = (
    "use 5 fields (minute hour day-of-month month day-of-week) or 6 with the "
    "seconds first (second minute hour day-of-month month day-of-week)"
)
_FIELD_HINTS = {  # cronsim's field names, in 6-field order, and what each takes
    "second": "0-59, lists a,b, ranges a-b, steps */n",
    "minute": "0-59, lists a,b, ranges a-b, steps */n",
    "hour": "0-23, lists a,b, ranges a-b, steps */n",
    "day-of-month": "1-31, L, LW, lists, ranges, steps; a day the months named have",
    "month": "1-12 or JAN-DEC, lists, ranges, steps",
    "day-of-week": "0-7 or SUN-SAT, lists, ranges, steps, 5L (last Friday), MON#1",
}
_MAX_SKIPS = 16  # results at or before the start to pass over (a repeated DST hour)
_JSON_KEYS = ("name", "cron", "queue", "payload_b64", "timezone", "priority")


def validate_schedule_name(name: object) -> str:
    """``name`` if it is 1-64 characters of ``A-Z a-z 0-9 . _ -`` (not ``.`` or ``..``)."""
    if not isinstance(name, str) or not SCHEDULE_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInput(
            "name",
            f"{name!r} is not a schedule name: use 1-64 characters of A-Z a-z 0-9 . _ - "
            "(not . or .., which URLs cannot carry)",
        )
    return name


def validate_cron(expr: object) -> str:
    """The expression with its fields joined by single spaces, if ``cronsim``
    parses it and it matches some date; else ``InvalidInput("cron", <why>)``."""
    if not isinstance(expr, str):
        raise InvalidInput("cron", f"must be a string, got {type(expr).__name__}")
    if len(expr) > MAX_CRON_LEN:
        raise InvalidInput("cron", f"is {len(expr)} characters; at most {MAX_CRON_LEN}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in expr.replace("\t", " ")):
        raise InvalidInput("cron", "must not contain control characters")
    fields = expr.split()
    if expr.lstrip().startswith("@"):
        raise InvalidInput(
            "cron", f"{expr!r}: macros such as @daily are not supported; " + _FIELD_FORMS
        )
    if len(fields) not in (5, 6):
        raise InvalidInput("cron", f"{expr!r} has {len(fields)} field(s); {_FIELD_FORMS}")
    normal = " ".join(fields)
    try:
        first = next(CronSim(normal, _PROBE), None)
    except CronSimError as exc:
        raise InvalidInput(
            "cron", f"{expr!r} is not a cron expression: {_why(exc, fields)}"
        ) from None
    if first is None:
        raise InvalidInput("cron", f"{expr!r} never matches a date")
    return normal


def _why(exc: CronSimError, fields: list[str]) -> str:
    """cronsim's "Bad minute" as "invalid minute field '61' (0-59 ...)"."""
    message = str(exc)
    name = message.removeprefix("Bad ")
    if name not in _FIELD_HINTS:
        return message
    position = list(_FIELD_HINTS).index(name) - (6 - len(fields))
    value = fields[position] if 0 <= position < len(fields) else ""
    return f"invalid {name} field {value!r} ({_FIELD_HINTS[name]})"


def validate_timezone(name: object) -> str:
    """``name`` if it is an IANA time zone name that ``zoneinfo`` can load
    (the ``tzdata`` package supplies them where the system has none)."""
    if not isinstance(name, str):
        raise InvalidInput("timezone", f"must be a string, got {type(name).__name__}")
    bad = InvalidInput("timezone", f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)")
    if len(name) > MAX_TIMEZONE_LEN or not TIMEZONE_RE.fullmatch(name) or name in _NOT_ZONES:
        raise bad
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise bad from None
    return name


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule. Build it with :meth:`create`; constructing one
    directly validates every field too (and refuses what ``create`` would
    normalize: a str payload, extra spaces in ``cron``).

    Times are milliseconds since the Unix epoch (Redis's clock), from
    :data:`MIN_TIME_MS` to :data:`MAX_TIME_MS`.
    """

    name: str
    cron: str
    queue: str
    payload: bytes
    timezone: str = "UTC"
    priority: int = 0

    def __post_init__(self) -> None:
        validate_schedule_name(self.name)
        if validate_cron(self.cron) != self.cron:
            raise InvalidInput("cron", "fields must be separated by single spaces")
        validate_queue_name(self.queue)
        if not isinstance(self.payload, bytes):
            raise InvalidInput("payload", f"must be bytes, got {type(self.payload).__name__}")
        validate_payload(self.payload)
        validate_timezone(self.timezone)
        validate_priority(self.priority)

    @classmethod
    def create(
        cls,
        name: object,
        cron: object,
        queue: object,
        payload: object,
        *,
        timezone: object = "UTC",
        priority: object = 0,
    ) -> Schedule:
        """Validate every field; raises :class:`InvalidInput` naming the first bad
        one (in the order of the arguments). ``payload`` is bytes or str (UTF-8);
        ``cron`` is normalized to single spaces between fields."""
        return cls(
            name=validate_schedule_name(name),
            cron=validate_cron(cron),
            queue=validate_queue_name(queue),
            payload=validate_payload(payload),
            timezone=validate_timezone(timezone),
            priority=validate_priority(priority),
        )

    # -- stored form and views ---------------------------------------------------

    def to_json(self) -> str:
        """The stored form: compact JSON, the payload in base64 (any bytes survive)."""
        return json.dumps(
            {
                "name": self.name,
                "cron": self.cron,
                "queue": self.queue,
                "payload_b64": base64.b64encode(self.payload).decode("ascii"),
                "timezone": self.timezone,
                "priority": self.priority,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Schedule:
        """The schedule :meth:`to_json` wrote. Anything else raises
        :class:`InvalidInput` (``field`` ``"schedule"`` when the text is not that
        form, or the field that fails validation). Unknown keys are ignored."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            raise InvalidInput("schedule", "stored form is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("schedule", "stored form is not a JSON object")
        missing = [key for key in _JSON_KEYS if key not in data]
        if missing:
            raise InvalidInput("schedule", f"stored form lacks {', '.join(missing)}")
        encoded = data["payload_b64"]
        if not isinstance(encoded, str):
            raise InvalidInput("schedule", "payload_b64 is not a string")
        try:
            payload = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("schedule", "payload_b64 is not base64") from None
        return cls.create(
            data["name"],
            data["cron"],
            data["queue"],
            payload,
            timezone=data["timezone"],
            priority=data["priority"],
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view for the HTTP API (the payload as UTF-8 text)."""
        return {
            "name": self.name,
            "cron": self.cron,
            "queue": self.queue,
            "payload": self.payload.decode(errors="replace"),
            "timezone": self.timezone,
            "priority": self.priority,
        }

    # -- fire times --------------------------------------------------------------

    def next_fire_ms(self, after_ms: int) -> int:
        """The first fire time strictly after ``after_ms``, evaluated on the wall
        clock of the schedule's time zone (DST as the module says).

        Fire times are whole seconds. Raises :class:`InvalidInput` for a time out
        of range, or (``field`` ``"cron"``) if the expression matches nothing in
        the 50 years after ``after_ms`` (cronsim's horizon; an expression that
        never matches is refused when the schedule is made).
        """
        check_int("after_ms", after_ms, MIN_TIME_MS, MAX_TIME_MS)
        start = datetime.fromtimestamp(after_ms // 1000, self._zone())
        times = CronSim(self.cron, start)
        for _ in range(_MAX_SKIPS):
            fire = next(times, None)
            if fire is None:
                break
            fire_ms = round(fire.timestamp()) * 1000
            if fire_ms > after_ms:
                return fire_ms
        raise InvalidInput("cron", f"{self.cron!r} has no fire time in the 50 years after that")

    def due_fire_ms(self, last_fire_ms: int, now_ms: int) -> int | None:
        """The fire time to run now: the latest one in ``(last_fire_ms, now_ms]``,
        or ``None`` if there is none.

        Fire times missed while no scheduler ran coalesce into this one run. The
        cost does not grow with their number: a bisection over the interval
        takes at most about 50 :meth:`next_fire_ms` steps (the log2 of the
        interval in ms: 33 for a per-second schedule after a month of downtime),
        and 2 when exactly one fire time is due.
        """
        check_int("last_fire_ms", last_fire_ms, MIN_TIME_MS, MAX_TIME_MS)
        check_int("now_ms", now_ms, MIN_TIME_MS, MAX_TIME_MS)
        if now_ms <= last_fire_ms:
            return None
        first = self.next_fire_ms(last_fire_ms)
        if first > now_ms:
            return None
        if self.next_fire_ms(first) > now_ms:
            return first  # the usual case: exactly one fire time is due
        # Some fire time lies in (low, now]; none lies in (high, now].
        low, high = first, now_ms
        while high - low > 1:
            middle = (low + high) // 2
            if self.next_fire_ms(middle) <= now_ms:
                low = middle
            else:
                high = middle
        return self.next_fire_ms(low)

    def idempotency_key(self, fire_ms: int) -> str:
        """``schedule:<name>:<fire_ms>``: the enqueue's dedup key, which makes each
        fire time's job happen once, whichever scheduler gets there first."""
        return f"schedule:{self.name}:{fire_ms}"

    def _zone(self) -> tzinfo:
        return UTC if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)
