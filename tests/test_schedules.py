"""Schedules (relay_trio.schedules), pure: validation of every field, the 5- and
6-field cron forms, fire times across DST, the policy for missed fire times
(coalesced, computed without walking them), the stored form."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_trio._errors import InvalidInput, RelayError
from relay_trio.schedules import MAX_TIME_MS, Schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def local(fire_ms: int, zone: ZoneInfo) -> str:
    """A fire time as the wall clock of ``zone`` shows it, with its UTC offset."""
    return datetime.fromtimestamp(fire_ms / 1000, zone).isoformat()


def fires(schedule: Schedule, after_ms: int, count: int) -> list[int]:
    out = []
    for _ in range(count):
        after_ms = schedule.next_fire_ms(after_ms)
        out.append(after_ms)
    return out


def make(cron: str = "* * * * *", timezone: str = "UTC") -> Schedule:
    return Schedule.create("nightly", cron, "emails", b"{}", timezone=timezone)


T0 = ms(datetime(2024, 1, 1, tzinfo=UTC))


# -- creation and validation ---------------------------------------------------------


def test_create_normalizes_and_validates() -> None:
    s = Schedule.create("nightly.report-1", "  0   3 * *  MON-FRI ", "emails", "héllo")
    assert s == Schedule("nightly.report-1", "0 3 * * MON-FRI", "emails", "héllo".encode())
    assert (s.timezone, s.priority) == ("UTC", 0)
    t = Schedule.create("n", "*/15 * * * * *", "q", b"x", timezone="Europe/Berlin", priority=255)
    assert (t.cron, t.timezone, t.priority) == ("*/15 * * * * *", "Europe/Berlin", 255)


@pytest.mark.parametrize("name", ["", "a" * 65, "a b", "é", "a/b", ".", "..", 5, None])
def test_bad_name(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        Schedule.create(name, "* * * * *", "q", b"")
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 * * * *", "invalid minute field '61'"),
        ("* 24 * * *", "invalid hour field '24'"),
        ("* * 0 * *", "invalid day-of-month field '0'"),
        ("* * 31 2 *", "invalid day-of-month field '31'"),
        ("* * * 13 *", "invalid month field '13'"),
        ("* * * * 8", "invalid day-of-week field '8'"),
        ("60 * * * * *", "invalid second field '60'"),
        ("*/0 * * * *", "invalid minute field '*/0'"),
        ("5-1 * * * *", "invalid minute field '5-1'"),
        ("x * * * *", "invalid minute field 'x'"),
        ("* * *", "has 3 field(s); use 5 fields"),
        ("* * * * * * *", "has 7 field(s)"),
        ("", "has 0 field(s)"),
        ("@daily", "macros such as @daily are not supported"),
        ("* * */20 * 1L", "never matches a date"),
        ("* * * * *\x00", "control characters"),
        ("* " * 200, "at most 256"),
    ],
)
def test_bad_cron_says_why(cron: str, says: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Schedule.create("n", cron, "q", b"")
    assert info.value.field == "cron"
    assert says in info.value.message


def test_cron_must_be_text() -> None:
    with pytest.raises(InvalidInput, match="cron: must be a string, got int"):
        Schedule.create("n", 5, "q", b"")


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", "", "America", "localtime", 3]
)
def test_bad_timezone(zone: object) -> None:
    with pytest.raises(InvalidInput) as info:
        Schedule.create("n", "* * * * *", "q", b"", timezone=zone)
    assert info.value.field == "timezone"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"queue": ""}, "queue"),
        ({"queue": "a b"}, "queue"),
        ({"queue": ".."}, "queue"),
        ({"payload": 5}, "payload"),
        ({"payload": b"x" * (1024 * 1024 + 1)}, "payload"),
        ({"payload": "\ud800"}, "payload"),
        ({"priority": -1}, "priority"),
        ({"priority": 256}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "1"}, "priority"),
    ],
)
def test_bad_queue_payload_priority(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"queue": "q", "payload": b"", "priority": 0} | kwargs
    with pytest.raises(InvalidInput) as info:
        Schedule.create("n", "* * * * *", args["queue"], args["payload"], priority=args["priority"])
    assert info.value.field == field
    assert isinstance(info.value, RelayError)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(InvalidInput, match=r"^cron: fields must be separated by single spaces"):
        Schedule("n", "*  * * * *", "q", b"")
    with pytest.raises(InvalidInput, match=r"^payload: must be bytes, got str"):
        Schedule("n", "* * * * *", "q", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"^timezone:"):
        Schedule("n", "* * * * *", "q", b"", timezone="Nowhere/Town")


# -- fire times ----------------------------------------------------------------------


def test_five_fields_fire_times() -> None:
    s = make("*/20 9-10 * * MON")  # 2024-01-01 is a Monday
    got = [local(f, ZoneInfo("UTC")) for f in fires(s, T0, 7)]
    assert got[:6] == [
        f"2024-01-01T{h}:{m}:00+00:00" for h in ("09", "10") for m in ("00", "20", "40")
    ]
    assert got[6] == "2024-01-08T09:00:00+00:00"


def test_six_fields_have_the_seconds_first() -> None:
    s = make("*/15 * * * * *")
    assert fires(s, T0, 4) == [T0 + 15_000, T0 + 30_000, T0 + 45_000, T0 + 60_000]
    s = make("30 0 * * * *")  # second 30 of minute 0 of every hour
    assert fires(s, T0, 2) == [T0 + 30_000, T0 + 3_600_000 + 30_000]


def test_next_fire_is_strictly_after() -> None:
    s = make("* * * * *")
    assert s.next_fire_ms(T0) == T0 + 60_000
    assert s.next_fire_ms(T0 - 1) == T0
    assert s.next_fire_ms(T0 + 59_999) == T0 + 60_000
    with pytest.raises(InvalidInput, match=r"^after_ms:"):
        s.next_fire_ms(-1)
    with pytest.raises(InvalidInput, match=r"^after_ms:"):
        s.next_fire_ms(MAX_TIME_MS + 1)


def test_local_time_of_the_zone_across_dst_new_york() -> None:
    s = make("0 9 * * *", "America/New_York")  # DST began 2024-03-10 at 02:00
    got = fires(s, ms(datetime(2024, 3, 8, 18, tzinfo=UTC)), 3)
    assert [local(f, NEW_YORK) for f in got] == [
        "2024-03-09T09:00:00-05:00",
        "2024-03-10T09:00:00-04:00",
        "2024-03-11T09:00:00-04:00",
    ]
    assert [datetime.fromtimestamp(f / 1000, UTC).hour for f in got] == [14, 13, 13]


def test_spring_forward_berlin_skipped_time_fires_once_after_the_jump() -> None:
    s = make("30 2 * * *", "Europe/Berlin")  # 2024-03-31 02:00 CET -> 03:00 CEST
    got = fires(s, ms(datetime(2024, 3, 30, 12, tzinfo=BERLIN)), 3)
    assert [local(f, BERLIN) for f in got] == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]


def test_fall_back_berlin_repeated_time_fires_once() -> None:
    s = make("30 2 * * *", "Europe/Berlin")  # 2024-10-27 03:00 CEST -> 02:00 CET
    got = fires(s, ms(datetime(2024, 10, 26, 12, tzinfo=BERLIN)), 2)
    assert [local(f, BERLIN) for f in got] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]
    # asked from inside the repeated hour, after the first 02:30: not again that day
    second_0210 = ms(datetime(2024, 10, 27, 2, 10, tzinfo=BERLIN, fold=1))
    assert local(s.next_fire_ms(second_0210), BERLIN) == "2024-10-28T02:30:00+01:00"


def test_fall_back_berlin_intervals_keep_real_time() -> None:
    s = make("*/30 * * * *", "Europe/Berlin")
    got = fires(s, ms(datetime(2024, 10, 27, 1, 45, tzinfo=BERLIN)), 5)
    assert [local(f, BERLIN) for f in got] == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-27T03:00:00+01:00",
    ]
    assert {b - a for a, b in pairwise(got)} == {1_800_000}


def test_six_fields_across_dst_follow_the_wall_clock() -> None:
    s = make("0 30 2 * * *", "Europe/Berlin")  # as the module documents
    spring = fires(s, ms(datetime(2024, 3, 30, 12, tzinfo=BERLIN)), 1)
    assert [local(f, BERLIN) for f in spring] == ["2024-04-01T02:30:00+02:00"]
    autumn = fires(s, ms(datetime(2024, 10, 26, 12, tzinfo=BERLIN)), 2)
    assert [local(f, BERLIN) for f in autumn] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:30:00+01:00",
    ]


# -- the policy for missed fire times ------------------------------------------------


def test_due_none_when_no_fire_time_in_the_interval() -> None:
    s = make("0 * * * *")
    assert s.due_fire_ms(T0, T0) is None
    assert s.due_fire_ms(T0, T0 + 3_599_999) is None
    assert s.due_fire_ms(T0 + 10, T0) is None


def test_due_bounds_last_excluded_now_included() -> None:
    s = make("0 * * * *")
    assert s.due_fire_ms(T0 - 1, T0) == T0
    assert s.due_fire_ms(T0, T0 + 3_600_000) == T0 + 3_600_000


def test_missed_fire_times_coalesce_into_the_latest() -> None:
    s = make("0 * * * *")
    assert s.due_fire_ms(T0, T0 + 5 * 3_600_000 + 123) == T0 + 5 * 3_600_000


def test_long_downtime_is_computed_not_walked() -> None:
    s = make("* * * * * *", "Europe/Berlin")  # every second
    month = 31 * 24 * 3_600_000
    started = time.perf_counter()
    assert s.due_fire_ms(T0, T0 + month + 567) == T0 + month
    assert s.due_fire_ms(0, T0 + 567) == T0  # 54 years of seconds
    sparse = make("* * 9 1 * *")  # every second of 09:00-09:59 on the 1st of each month
    assert sparse.due_fire_ms(0, T0 + 12 * 3_600_000) == T0 + 10 * 3_600_000 - 1000
    assert time.perf_counter() - started < 1.0


@settings(max_examples=60, deadline=None)
@given(
    cron=st.sampled_from(["*/7 * * * *", "30 2 * * *", "0 */2 * * *", "*/45 * 2-3 * * *"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    start=st.integers(0, 10 * 24 * 3_600_000),
    span=st.integers(0, 36 * 3_600_000),
)
def test_due_is_the_latest_fire_time_walked_one_by_one(
    cron: str, zone: str, start: int, span: int
) -> None:
    s = make(cron, zone)
    last = ms(datetime(2024, 3, 28, tzinfo=UTC)) + start  # around the March changes
    now = last + span
    walked, t = None, s.next_fire_ms(last)
    while t <= now:
        walked, t = t, s.next_fire_ms(t)
    assert s.due_fire_ms(last, now) == walked


def test_idempotency_key_names_the_schedule_and_fire_time() -> None:
    assert make().idempotency_key(T0) == f"schedule:nightly:{T0}"


# -- stored form and views -----------------------------------------------------------


def test_json_round_trip_keeps_any_payload() -> None:
    s = Schedule.create("n", "0 3 * * *", "q", b"\xff\x00bin", timezone="Asia/Tokyo", priority=9)
    assert Schedule.from_json(s.to_json()) == s
    assert Schedule.from_json(s.to_json().encode()) == s
    stored = json.loads(s.to_json())
    assert stored["payload_b64"] == "/wBiaW4="


def test_to_dict_for_the_api() -> None:
    s = Schedule.create("n", "0 3 * * *", "q", '{"a": 1}', timezone="Europe/Berlin")
    assert s.to_dict() == {
        "name": "n",
        "cron": "0 3 * * *",
        "queue": "q",
        "payload": '{"a": 1}',
        "timezone": "Europe/Berlin",
        "priority": 0,
    }


GOOD = json.loads(make().to_json())


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "schedule"),
        ("not json", "schedule"),
        (b"\xff\xfe", "schedule"),
        ("[]", "schedule"),
        ("null", "schedule"),
        ("{}", "schedule"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "cron"}), "schedule"),
        (json.dumps(GOOD | {"payload_b64": "***"}), "schedule"),
        (json.dumps(GOOD | {"payload_b64": 5}), "schedule"),
        (json.dumps(GOOD | {"cron": "99 * * * *"}), "cron"),
        (json.dumps(GOOD | {"name": 7}), "name"),
        (json.dumps(GOOD | {"timezone": "Nope/Nope"}), "timezone"),
        (json.dumps(GOOD | {"priority": True}), "priority"),
        (json.dumps(GOOD | {"queue": None}), "queue"),
    ],
)
def test_from_json_refuses_garbage(text: str | bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Schedule.from_json(text)
    assert info.value.field == field


def test_from_json_ignores_unknown_keys() -> None:
    assert Schedule.from_json(json.dumps(GOOD | {"later": 1})) == make()
