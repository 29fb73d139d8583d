"""The core's one retry rule: which failures are transient, the backoff, and `retry_until`."""

from __future__ import annotations

import asyncio
import pickle
import random

import httpx
import pytest

from tests.support.fake_time import FakeTime
from whatsray.inbox import InboxError, InboxLayoutMismatch, InboxUnavailable
from whatsray.llm import (
    LLMBadRequest,
    LLMBadResponse,
    LLMContextTooLong,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
)
from whatsray.retries import (
    Backoff,
    GaveUp,
    Unavailable,
    is_transient,
    parse_retry_after,
    retry_until,
)
from whatsray.whatsapp.errors import (
    GraphTimeoutError,
    InvalidParameterError,
    MessageValidationError,
    TransportError,
    error_from_meta,
)

# -- is_transient ---------------------------------------------------------------------------------


class ActorDiedError(Exception):
    """Named like Ray's: the core judges Ray's failures by name, without importing Ray."""


class RayActorError(Exception):
    pass


class ActorDiedSubclass(ActorDiedError):
    pass


class RayTaskError(Exception):
    """Ray's wrapper of the remote code's own exception: not a failure of a process."""


@pytest.mark.parametrize(
    "error",
    [
        error_from_meta({"code": 130429, "message": "throughput"}),  # ThroughputLimitError
        error_from_meta({"code": 131000, "message": "something went wrong"}),  # ServerError
        error_from_meta({"code": 2, "message": "service unavailable"}),
        error_from_meta({"code": 999_999, "message": "new"}, http_status=503),  # unknown, 5xx
        error_from_meta({"code": 999_999, "message": "new", "is_transient": True}, http_status=400),
        TransportError("connection reset"),
        GraphTimeoutError("timed out"),
        LLMUnavailable("down", engine="e"),
        LLMRateLimited("429", engine="e", retry_after=2.0),
        LLMTimeout("slow", engine="e"),
        InboxUnavailable("redis down"),
        Unavailable("the store is restarting"),
        ConnectionError("refused"),
        ConnectionRefusedError("refused"),
        TimeoutError("timed out"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        ActorDiedError("the actor died"),
        ActorDiedSubclass("a subclass of one"),
        RayActorError("the actor is gone"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        error_from_meta({"code": 131026, "message": "undeliverable"}),
        error_from_meta({"code": 100, "message": "invalid parameter"}),
        error_from_meta({"code": 190, "message": "token expired"}),
        error_from_meta({"code": 999_999, "message": "new"}, http_status=400),  # unknown, 4xx
        InvalidParameterError("bad"),
        MessageValidationError("bad"),
        LLMBadRequest("400", engine="e"),
        LLMContextTooLong("too long", engine="e"),
        LLMBadResponse("not json", engine="e"),
        InboxError("WRONGTYPE"),
        InboxLayoutMismatch("4 partitions, configured 8"),
        ValueError("a bug"),
        KeyError("a bug"),
        RuntimeError("a bug"),
        httpx.HTTPStatusError(
            "404",
            request=httpx.Request("GET", "http://x"),
            response=httpx.Response(404),
        ),
        RayTaskError("the remote code raised"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_failures(error: BaseException) -> None:
    assert not is_transient(error)


def test_an_error_that_decides_itself_wins_over_its_base_class() -> None:
    class Refused(ConnectionError):
        is_transient = False

    class Flaky(ValueError):
        is_transient = True

    assert not is_transient(Refused("refused for good"))
    assert is_transient(Flaky("try again"))


def test_a_non_bool_is_transient_attribute_is_ignored() -> None:
    class Odd(ConnectionError):
        is_transient = "yes"

    assert is_transient(Odd())  # judged as a ConnectionError


# -- Backoff --------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_initial_wait_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.delay(0) == 0.5  # "no failure yet" reads as the first
    assert backoff.nominal(10_000) == 3.0  # no overflow
    assert Backoff(initial_s=1.0, factor=1e10, max_s=5.0).nominal(100) == 5.0
    assert Backoff(initial_s=1.0, factor=10**10, max_s=5.0).nominal(100) == 5.0
    assert Backoff(initial_s=0.0, jitter=0.0).delay(5) == 0.0


def test_backoff_jitter_stays_in_its_range_and_varies() -> None:
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.2)
    rng = random.Random(3)
    delays = [backoff.delay(3, rng=rng) for _ in range(500)]
    assert all(4.0 * 0.8 <= d <= 4.0 * 1.2 for d in delays)
    assert min(delays) < 4.0 * 0.85 and max(delays) > 4.0 * 1.15  # the whole range is used
    assert len({round(d, 9) for d in delays}) > 400
    same = random.Random(3)
    assert delays[:3] == [backoff.delay(3, rng=same) for _ in range(3)]  # the rng decides
    assert all(9.6 <= backoff.delay(100) <= 72.0 for _ in range(100))  # capped, then jittered


def test_a_longer_retry_after_wins_and_a_shorter_one_does_not() -> None:
    backoff = Backoff(initial_s=1.0, max_s=10.0, jitter=0.0)
    assert backoff.delay(1, retry_after=30.0) == 30.0  # past the cap too: the server knows
    assert backoff.delay(3, retry_after=1.0) == 4.0
    assert backoff.delay(3, retry_after=None) == 4.0
    assert Backoff(jitter=0.5).delay(1, retry_after=5.0, rng=random.Random(1)) == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": -1}, {"max_s": -0.1}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_backoff_is_a_value() -> None:
    backoff = Backoff(initial_s=0.3, max_s=2.0)
    assert pickle.loads(pickle.dumps(backoff)) == backoff
    with pytest.raises(AttributeError):
        backoff.max_s = 5.0  # type: ignore[misc]


# -- parse_retry_after ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"RETRY-AFTER": "0"}, 0.0),
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),
        ({"Retry-After-Ms": "x", "Retry-After": "2"}, 2.0),  # a bad ms value falls back
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),  # a date: ignored
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
    assert parse_retry_after(httpx.Headers(headers)) == expected


# -- retry_until ----------------------------------------------------------------------------------


class Script:
    """A call that raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


NO_JITTER = Backoff(initial_s=1.0, factor=2.0, max_s=5.0, jitter=0.0)


async def test_a_permanent_failure_gives_up_at_once() -> None:
    time, call = FakeTime(100.0), Script(ValueError("bad input"))
    with pytest.raises(GaveUp) as caught:
        await retry_until(
            call, what="send", backoff=NO_JITTER, deadline=None, now=time.clock, sleep=time.sleep
        )
    assert caught.value.reason == "permanent"
    assert caught.value.what == "send"
    assert isinstance(caught.value.error, ValueError)
    assert caught.value.__cause__ is caught.value.error
    assert caught.value.description == "ValueError: bad input"
    assert call.calls == 1 and time.sleeps == []


async def test_transient_failures_are_retried_with_backoff_until_success() -> None:
    time = FakeTime(100.0)
    call = Script(ConnectionError("a"), InboxUnavailable("b"), LLMTimeout("c", engine="e"))
    told: list[tuple[str, float]] = []
    result = await retry_until(
        call,
        what="commit",
        backoff=NO_JITTER,
        deadline=None,
        now=time.clock,
        sleep=time.sleep,
        on_retry=lambda exc, wait: told.append((type(exc).__name__, wait)),
    )
    assert result == "done"
    assert call.calls == 4
    assert time.sleeps == [1.0, 2.0, 4.0]
    assert told == [("ConnectionError", 1.0), ("InboxUnavailable", 2.0), ("LLMTimeout", 4.0)]


async def test_the_errors_retry_after_is_honoured() -> None:
    time = FakeTime(100.0)
    call = Script(LLMRateLimited("429", engine="e", retry_after=7.0), ConnectionError())
    await retry_until(
        call, what="chat", backoff=NO_JITTER, deadline=None, now=time.clock, sleep=time.sleep
    )
    assert time.sleeps == [7.0, 2.0]


async def test_a_retry_that_would_end_past_the_deadline_gives_up() -> None:
    time = FakeTime(100.0)
    call = Script(*[ConnectionError(f"down {n}") for n in range(10)])
    with pytest.raises(GaveUp) as caught:
        await retry_until(
            call,
            what="hook",
            backoff=NO_JITTER,
            deadline=time.now + 4.0,
            now=time.clock,
            sleep=time.sleep,
        )
    # t=100 fail, wait 1 -> t=101 fail, wait 2 -> t=103 fail: a wait of 4 would end at 107.
    assert caught.value.reason == "deadline"
    assert str(caught.value.error) == "down 2"
    assert call.calls == 3 and time.sleeps == [1.0, 2.0]


async def test_a_permanent_failure_after_transient_ones_gives_up_as_permanent() -> None:
    time = FakeTime(100.0)
    call = Script(ConnectionError(), InboxLayoutMismatch("8 partitions"))
    with pytest.raises(GaveUp) as caught:
        await retry_until(
            call, what="read", backoff=NO_JITTER, deadline=None, now=time.clock, sleep=time.sleep
        )
    assert caught.value.reason == "permanent"
    assert isinstance(caught.value.error, InboxLayoutMismatch)
    assert time.sleeps == [1.0]


async def test_a_cancellation_is_never_retried() -> None:
    time, call = FakeTime(100.0), Script(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry_until(
            call, what="read", backoff=NO_JITTER, deadline=None, now=time.clock, sleep=time.sleep
        )
    assert call.calls == 1
