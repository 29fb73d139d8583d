"""Logs (docs/logging.md): the JSON and text formats, the correlation ids from the context, the
chat's hash, and the redaction of secrets."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from whatsray.batching import Batcher
from whatsray.observability.logs import (
    REDACTED,
    LogFormat,
    LogSetup,
    bind_ids,
    chat_hash,
    configure_logging,
    log_context,
    log_ids,
)
from whatsray.settings import SettingsError, load_settings
from whatsray.whatsapp.events import ChatKey

CHAT = ChatKey(phone_number_id="106540352242922", user="15551234567")
SECRETS = ("app-secret-0123456789", "EAAG-access-token-abcdef", "verify-me-42", "admin-tok-xyz")

log = logging.getLogger("whatsray.test_logs")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """configure_logging owns the root logger: give pytest's handlers back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def capture(fmt: LogFormat = "json", **fields: str | int) -> io.StringIO:
    """The root logger set up as a process would be, writing to the returned stream."""
    stream = io.StringIO()
    configure_logging(LogSetup(format=fmt, secrets=_secrets(), fields=fields), stream=stream)
    return stream


def _secrets() -> tuple[SecretStr, ...]:
    return tuple(SecretStr(s) for s in SECRETS)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


# --- the formats ---------------------------------------------------------------------------------


def test_json_is_one_object_per_line_with_time_level_logger_and_message() -> None:
    stream = capture()
    log.info("first\nsecond line of the same record")
    log.warning("%s and %d", "args", 2)
    first, second = records(stream)
    assert first["message"] == "first\nsecond line of the same record"
    assert first["level"] == "INFO"
    assert first["logger"] == "whatsray.test_logs"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second == {**second, "level": "WARNING", "message": "args and 2"}


def test_json_carries_the_exception_text() -> None:
    stream = capture()
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    [entry] = records(stream)
    assert entry["message"] == "it failed"
    assert "Traceback" in entry["exception"] and "ValueError: boom" in entry["exception"]


def test_text_puts_the_ids_after_the_message_and_the_traceback_below() -> None:
    stream = capture("text", actor="outbox-1")
    with log_context(turn_id="turn-1", partition=3):
        try:
            raise KeyError("k")
        except KeyError:
            log.error("send failed", exc_info=True)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith(
        "ERROR whatsray.test_logs: send failed actor=outbox-1 partition=3 turn_id=turn-1"
    )
    assert rest[0] == "Traceback (most recent call last):"


def test_a_line_without_ids_has_no_id_fields() -> None:
    stream = capture()
    log.info("plain")
    [entry] = records(stream)
    assert set(entry) == {"time", "level", "logger", "message"}


# --- the ids -------------------------------------------------------------------------------------


def test_the_context_ids_are_on_every_line_of_the_block_and_gone_after() -> None:
    stream = capture(actor="session-host-1", partition=1)
    with log_context(wamid="wamid.A", chat=CHAT):
        with log_context(turn_id="turn-x"):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = records(stream)
    assert inner["wamid"] == "wamid.A" and inner["turn_id"] == "turn-x"
    assert inner["chat"] == chat_hash(CHAT) and inner["actor"] == "session-host-1"
    assert "turn_id" not in outer and outer["wamid"] == "wamid.A"
    assert "wamid" not in after and after["partition"] == 1


def test_a_calls_own_ids_win_over_the_context_and_the_process() -> None:
    stream = capture(partition=0)
    with log_context(wamid="wamid.context"):
        log.info("x", extra=log_ids(wamid=["wamid.1", "wamid.2"], partition=5))
    [entry] = records(stream)
    assert entry["wamid"] == "wamid.1,wamid.2"
    assert entry["partition"] == 5


async def test_a_task_keeps_the_ids_it_started_with_and_never_sees_another_tasks() -> None:
    stream = capture()
    go = asyncio.Event()

    async def chat(user: str) -> None:
        bind_ids(chat=ChatKey(phone_number_id="1", user=user), wamid=f"wamid.{user}")
        await go.wait()  # both tasks have bound their ids before either logs
        log.info(user)

    with log_context(turn_id="turn-started-here"):
        tasks = [asyncio.create_task(chat(u)) for u in ("111", "222")]
    log.info("outside")
    go.set()
    await asyncio.gather(*tasks)
    by_message = {e["message"]: e for e in records(stream)}
    for user in ("111", "222"):
        entry = by_message[user]
        assert entry["wamid"] == f"wamid.{user}"
        assert entry["chat"] == chat_hash(f"1:{user}")
        assert entry["turn_id"] == "turn-started-here"
    assert set(by_message["outside"]) == {"time", "level", "logger", "message"}


async def test_a_batchers_flush_does_not_carry_the_ids_of_the_caller_that_started_it() -> None:
    stream = capture()

    async def flush(items: list[int]) -> list[None]:
        log.info("flushed %d", len(items))
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush, name="t", linger_s=0)
    with log_context(chat=CHAT, turn_id="turn-of-one-caller"):
        await batcher.submit(1)
    [entry] = records(stream)
    assert entry["message"] == "flushed 1"
    assert "chat" not in entry and "turn_id" not in entry


def test_the_chat_is_a_short_hash_of_its_key_never_the_key() -> None:
    expected = hashlib.sha256(b"106540352242922:15551234567").hexdigest()[:12]
    assert chat_hash(CHAT) == chat_hash(str(CHAT)) == expected
    assert chat_hash(expected) == expected  # a hash is kept, not hashed again
    assert log_ids(chat=CHAT) == {"chat": expected}
    stream = capture("text")
    # A raw key slipped into `extra` by mistake is hashed all the same.
    log.info("x", extra={"chat": str(CHAT)})
    log.info("y", extra=log_ids(chat=CHAT))
    assert "15551234567" not in stream.getvalue()
    assert stream.getvalue().count(f"chat={expected}") == 2


def test_unset_ids_are_left_out() -> None:
    assert log_ids(wamid=None, turn_id=None, outbound_id=None, chat=None, partition=None) == {}
    assert log_ids(wamid=()) == {}
    assert log_ids(outbound_id="t:0", partition=0) == {"outbound_id": "t:0", "partition": 0}


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_redacted_from_message_args_exception_and_ids(fmt: LogFormat) -> None:
    stream = capture(fmt)
    app_secret, access_token, verify_token, admin_token = SECRETS
    log.info(f"the app secret is {app_secret}")
    log.warning("headers %s", {"Authorization": f"Bearer {access_token}"})
    try:
        raise RuntimeError(f"token {verify_token} rejected")
    except RuntimeError:
        log.exception("handshake")
    log.info("ids", extra={"turn_id": f"t-{admin_token}"})
    text = stream.getvalue()
    for secret in SECRETS:
        assert secret not in text
    assert text.count(REDACTED) == 4
    if fmt == "json":
        entries = records(stream)
        assert entries[0]["message"] == f"the app secret is {REDACTED}"
        assert "Bearer ***" in entries[1]["message"]
        assert f"token {REDACTED} rejected" in entries[2]["exception"]
        assert entries[3]["turn_id"] == f"t-{REDACTED}"


def test_a_secret_containing_another_is_redacted_whole() -> None:
    stream = io.StringIO()
    setup = LogSetup(format="text", secrets=(SecretStr("abc"), SecretStr("xxabcxx")))
    configure_logging(setup, stream=stream)
    log.info("value xxabcxx and abc")
    assert stream.getvalue().rstrip().endswith("value *** and ***")


def test_the_setup_pickles_and_its_repr_shows_no_secret() -> None:
    setup = LogSetup(format="json", secrets=_secrets()).for_process(actor="store")
    assert pickle.loads(pickle.dumps(setup)) == setup
    for secret in SECRETS:
        assert secret not in repr(setup)


# --- setup ---------------------------------------------------------------------------------------


def test_setup_replaces_every_root_handler_and_none_leaves_logging_alone() -> None:
    root = logging.getLogger()
    other = logging.StreamHandler(io.StringIO())
    root.addHandler(other)
    first = configure_logging(LogSetup(), stream=io.StringIO())
    second = configure_logging(LogSetup(), stream=io.StringIO())
    assert root.handlers == [second] and first is not second
    assert configure_logging(None) is None
    assert root.handlers == [second]
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


def test_settings_choose_json_on_a_cluster_and_text_locally(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("WHATSRAY_MODE", "WHATSRAY_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    cluster = {
        "mode": "cluster",
        "app_secret": SECRETS[0],
        "access_token": SECRETS[1],
        "verify_token": SECRETS[2],
        "admin_token": SECRETS[3],
        "phone_number_ids": ["106540352242922"],
        "redis_url": "redis://redis.internal:6380/0",
    }
    assert load_settings().effective_log_format == "text"
    assert load_settings(**cluster).effective_log_format == "json"
    assert load_settings(**cluster, log_format="text").effective_log_format == "text"
    monkeypatch.setenv("WHATSRAY_LOG_FORMAT", "json")
    assert load_settings().effective_log_format == "json"
    setup = LogSetup.from_settings(load_settings(**cluster))
    assert sorted(s.get_secret_value() for s in setup.secrets) == sorted(SECRETS)


def test_the_level_comes_from_the_settings_unless_the_process_sets_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("WHATSRAY_LOG_LEVEL", raising=False)
    assert LogSetup.from_settings(load_settings()).level == logging.INFO
    monkeypatch.setenv("WHATSRAY_LOG_LEVEL", "WARNING")
    assert LogSetup.from_settings(load_settings()).level == logging.WARNING
    assert LogSetup.from_settings(load_settings(), level=logging.DEBUG).level == logging.DEBUG
    monkeypatch.setenv("WHATSRAY_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError, match="WHATSRAY_LOG_LEVEL"):
        load_settings()
