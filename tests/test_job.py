"""The job model and its validation (pure: no Redis)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from relay_trio import job as jobmod
from relay_trio._errors import InvalidInput, RelayError
from relay_trio.job import (
    Job,
    JobSpec,
    JobState,
    new_job_id,
    validate_delay_ms,
    validate_idempotency_key,
    validate_job_id,
    validate_max_retries,
    validate_payload,
    validate_priority,
    validate_queue_name,
)

# -- queue names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "0", "emails", "a.b_c-d", "A-Za-z0-9._-", "x" * 64, "...", "-", "_"],
)
def test_queue_name_accepted(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 65,
        "a b",
        " a",
        "a/b",
        "a:b",
        "a{b}",
        "a*",
        "a\n",
        "caf\u00e9",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not 0-9
        "\uff51",  # FULLWIDTH LATIN SMALL LETTER Q
        5,
        None,
        b"emails",
        ["emails"],
    ],
)
def test_queue_name_rejected(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_queue_name(name)
    assert info.value.field == "queue"
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RelayError)
    assert str(info.value).startswith("queue: ")


# -- job ids --------------------------------------------------------------------


def test_job_id_validation() -> None:
    good = "0123456789abcdef" * 2
    assert validate_job_id(good) == good
    for bad in ["", good[:-1], good + "0", good.upper(), "g" * 32, None, 5, good.encode()]:
        with pytest.raises(InvalidInput) as info:
            validate_job_id(bad)
        assert info.value.field == "id"


def test_new_job_id_is_32_lowercase_hex_and_unique() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(validate_job_id(i) == i for i in ids[:10])


# -- numbers --------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 128, 254, 255])
def test_priority_accepted(value: int) -> None:
    assert validate_priority(value) == value


@pytest.mark.parametrize("value", [-1, 256, 1000, True, False, 1.0, 5.5, "5", None])
def test_priority_rejected(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_priority(value)
    assert info.value.field == "priority"


def test_max_retries() -> None:
    assert validate_max_retries(0) == 0
    assert validate_max_retries(5) == 5
    assert validate_max_retries(jobmod.MAX_RETRIES_LIMIT) == jobmod.MAX_RETRIES_LIMIT
    for bad in [-1, jobmod.MAX_RETRIES_LIMIT + 1, True, 2.0, "3", None]:
        with pytest.raises(InvalidInput) as info:
            validate_max_retries(bad)
        assert info.value.field == "max_retries"


def test_delay_ms() -> None:
    assert validate_delay_ms(0) == 0
    assert validate_delay_ms(1500) == 1500
    assert validate_delay_ms(jobmod.MAX_DELAY_MS) == jobmod.MAX_DELAY_MS
    for bad in [-1, -1000, jobmod.MAX_DELAY_MS + 1, True, 1.5, "10"]:
        with pytest.raises(InvalidInput) as info:
            validate_delay_ms(bad)
        assert info.value.field == "delay_ms"


# -- idempotency keys -------------------------------------------------------------


def test_idempotency_key_accepted() -> None:
    assert validate_idempotency_key(None) == ""
    assert validate_idempotency_key("") == ""
    assert validate_idempotency_key("order-42") == "order-42"
    assert validate_idempotency_key("with space:{x}/é") == "with space:{x}/é"
    long_key = "k" * jobmod.MAX_IDEMPOTENCY_KEY_LEN
    assert validate_idempotency_key(long_key) == long_key


@pytest.mark.parametrize(
    "key",
    [
        "a\nb",
        "a\rb",
        "a\tb",
        "\x00",
        "tail\x1f",
        "del\x7f",
        "k" * (jobmod.MAX_IDEMPOTENCY_KEY_LEN + 1),
        42,
        b"bytes",
    ],
)
def test_idempotency_key_rejected(key: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_idempotency_key(key)
    assert info.value.field == "idempotency_key"


def test_idempotency_key_rejects_c1_control_characters() -> None:
    # The docstring promises "Control characters are refused"; U+0080..U+009F (e.g.
    # U+0085 NEXT LINE, a line break) are control characters (Unicode category Cc)
    # just like U+0000..U+001F.
    for key in ["a\x85b", "a\x9bb", "\x80"]:
        with pytest.raises(InvalidInput) as info:
            validate_idempotency_key(key)
        assert info.value.field == "idempotency_key"


# -- payloads -------------------------------------------------------------------


def test_payload_str_is_utf8_bytes() -> None:
    assert validate_payload("héllo ✓") == "héllo ✓".encode()
    assert validate_payload("") == b""


def test_payload_bytes_kept() -> None:
    raw = bytes(range(256))
    assert validate_payload(raw) is raw
    assert validate_payload(bytearray(b"ab")) == b"ab"
    assert validate_payload(memoryview(b"cd")) == b"cd"


def test_payload_size_limit() -> None:
    limit = jobmod.DEFAULT_MAX_PAYLOAD_BYTES
    assert limit == 1024 * 1024
    assert len(validate_payload(b"x" * limit)) == limit
    with pytest.raises(InvalidInput) as info:
        validate_payload(b"x" * (limit + 1))
    assert info.value.field == "payload"
    assert validate_payload(b"abc", max_bytes=3) == b"abc"
    with pytest.raises(InvalidInput):
        validate_payload(b"abcd", max_bytes=3)
    # The limit is on the encoded bytes, not on the characters.
    with pytest.raises(InvalidInput):
        validate_payload("éé", max_bytes=3)


@pytest.mark.parametrize("payload", [None, 5, 1.5, ["a"], {"a": 1}, object()])
def test_payload_non_bytes_rejected(payload: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_payload(payload)
    assert info.value.field == "payload"


# -- JobSpec ------------------------------------------------------------------------


def test_jobspec_create_defaults() -> None:
    spec = JobSpec.create("hi")
    assert spec.payload == b"hi"
    assert spec.priority == jobmod.DEFAULT_PRIORITY
    assert spec.max_retries == jobmod.DEFAULT_MAX_RETRIES == 5
    assert spec.delay_ms == 0
    assert spec.ready_at_ms is None
    assert spec.idempotency_key == ""
    assert re.fullmatch(r"[0-9a-f]{32}", spec.id)
    assert JobSpec.create("hi").id != spec.id


def test_jobspec_create_all_fields() -> None:
    job_id = "ab" * 16
    spec = JobSpec.create(
        b"\x00\x01",
        priority=200,
        max_retries=0,
        delay_ms=2500,
        idempotency_key="k1",
        job_id=job_id,
    )
    assert spec == JobSpec(job_id, b"\x00\x01", 200, 0, 2500, None, "k1")
    assert JobSpec.create("x", delay_ms=None).delay_ms == 0


def test_jobspec_create_ready_at() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    spec = JobSpec.create("x", ready_at=at)
    assert spec.ready_at_ms == int(at.timestamp() * 1000)
    # Another time zone, the same instant.
    other = at.astimezone(timezone(timedelta(hours=5)))
    assert JobSpec.create("x", ready_at=other).ready_at_ms == spec.ready_at_ms
    with pytest.raises(InvalidInput) as info:
        JobSpec.create("x", ready_at=datetime(2030, 1, 1))  # naive
    assert info.value.field == "ready_at"
    with pytest.raises(InvalidInput) as info:
        JobSpec.create("x", ready_at=at, delay_ms=5)
    assert info.value.field == "ready_at"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 256}, "priority"),
        ({"priority": -1}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"delay_ms": -5}, "delay_ms"),
        ({"idempotency_key": "a\nb"}, "idempotency_key"),
        ({"job_id": "NOT-AN-ID"}, "id"),
        ({"max_payload_bytes": 1}, "payload"),
    ],
)
def test_jobspec_create_rejects(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        JobSpec.create("xy", **options)  # type: ignore[arg-type]
    assert info.value.field == field


# -- Job -------------------------------------------------------------------------------

RAW = {
    b"id": b"0123456789abcdef" * 2,
    b"queue": b"emails",
    b"payload": b"\xff\x00payload",
    b"state": b"inflight",
    b"attempts": b"2",
    b"max_retries": b"7",
    b"priority": b"9",
    b"created_at": b"1700000000123",
    b"idempotency_key": b"order-1",
    b"lease": b"deadbeefcafef00d",
    b"last_error": b"boom",
    b"deadline": b"1700000030123",
    b"seq": b"17",
}


def _check_raw_job(job: Job) -> None:
    assert job.id == "0123456789abcdef" * 2
    assert job.queue == "emails"
    assert job.payload == b"\xff\x00payload"
    assert job.state is JobState.INFLIGHT
    assert job.attempts == 2
    assert job.max_retries == 7
    assert job.priority == 9
    assert job.created_at_ms == 1700000000123
    assert job.idempotency_key == "order-1"
    assert job.lease == "deadbeefcafef00d"
    assert job.last_error == "boom"
    assert job.deadline_ms == 1700000030123
    assert job.ready_at_ms is None
    assert job.dead_at_ms is None
    assert job.created_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_job_from_hash_dict() -> None:
    _check_raw_job(Job.from_hash(RAW))


def test_job_from_hash_flat_list() -> None:
    flat: list[bytes] = []
    for key, value in RAW.items():
        flat += [key, value]
    job = Job.from_hash(flat)
    _check_raw_job(job)
    assert job == Job.from_hash(RAW)


def test_job_from_hash_minimal_fields() -> None:
    job = Job.from_hash(
        [b"id", b"a" * 32, b"queue", b"q", b"state", b"dead", b"dead_at", b"5", b"ready_at", b""]
    )
    assert job.state is JobState.DEAD
    assert job.payload == b""
    assert job.attempts == 0
    assert job.lease == ""
    assert job.last_error == ""
    assert job.idempotency_key == ""
    assert job.dead_at_ms == 5
    assert job.ready_at_ms is None


def test_job_from_fields_matches_from_hash() -> None:
    def values(raw: dict[bytes, bytes]) -> list[bytes | None]:
        return [raw.get(name.encode()) for name in jobmod.FIELDS]

    assert not hasattr(Job, "__post_init__")  # from_fields fills the slots itself
    full = {**RAW, b"ready_at": b"1700000001000", b"dead_at": b"1700000002000"}
    for raw in (RAW, full, {**RAW, b"idempotency_key": b"\xfe"}):
        assert Job.from_fields(values(raw)) == Job.from_hash(raw)
    _check_raw_job(Job.from_fields(values(RAW)))
    minimal = {b"id": b"a" * 32, b"queue": b"q", b"state": b"dead", b"dead_at": b"5"}
    minimal[b"ready_at"] = b""
    assert Job.from_fields(values(minimal)) == Job.from_hash(minimal)
    # a script may give number fields as integers
    as_ints: list[object] = list(values(RAW))
    for name in ("attempts", "deadline"):
        as_ints[jobmod.FIELDS.index(name)] = int(RAW[name.encode()])
    assert Job.from_fields(as_ints) == Job.from_hash(RAW)


def test_job_from_fields_refuses_what_from_hash_refuses() -> None:
    for field, bad in ((b"state", b"gone"), (b"attempts", b"x"), (b"deadline", b"soon")):
        raw = {**RAW, field: bad}
        with pytest.raises(ValueError):
            Job.from_hash(raw)
        with pytest.raises(ValueError):
            Job.from_fields([raw.get(name.encode()) for name in jobmod.FIELDS])


def test_job_to_dict() -> None:
    job = Job.from_hash(RAW)
    d = job.to_dict()
    assert d == {
        "id": "0123456789abcdef" * 2,
        "queue": "emails",
        "payload": "\ufffd\x00payload",
        "state": "inflight",
        "attempts": 2,
        "max_retries": 7,
        "priority": 9,
        "created_at": "2023-11-14T22:13:20.123000Z",
        "idempotency_key": "order-1",
        "last_error": "boom",
        "timeout_ms": None,
        "result": None,
        "result_type": None,
        "finished_at": None,
    }
    created = d["created_at"]
    assert isinstance(created, str)
    assert created.endswith("Z")
    assert "+" not in created
    parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert parsed == job.created_at
    assert parsed.utcoffset() == timedelta(0)


def test_job_to_dict_whole_second_is_utc_z() -> None:
    raw = dict(RAW)
    raw[b"created_at"] = b"0"
    assert Job.from_hash(raw).to_dict()["created_at"] == "1970-01-01T00:00:00Z"


def test_job_state_values() -> None:
    states = {"pending", "ready", "inflight", "delayed", "dead", "done", "cancelled"}
    assert {s.value for s in JobState} == states
    assert {s for s in JobState if s.finished} == {JobState.DONE, JobState.DEAD, JobState.CANCELLED}
    assert JobState("ready") is JobState.READY


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"priority": 999}, "priority"),
        ({"priority": -1}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"delay_ms": -5}, "delay_ms"),
        ({"id": "not-hex"}, "id"),
        ({"payload": "text"}, "payload"),
        ({"idempotency_key": "a\nb"}, "idempotency_key"),
        ({"ready_at_ms": -1}, "ready_at"),
    ],
)
def test_jobspec_constructed_directly_is_validated(fields: dict[str, object], bad: str) -> None:
    base: dict[str, object] = {"id": jobmod.new_job_id(), "payload": b"x"}
    with pytest.raises(InvalidInput) as info:
        JobSpec(**{**base, **fields})  # type: ignore[arg-type]
    assert info.value.field == bad
