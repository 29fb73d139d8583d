"""Logging for every whatsray process: JSON lines or text, correlation ids, no secrets.

Each process calls `configure_logging(setup)` once when it starts (the CLI, every actor, the
ingress replica): one handler on the root logger, to the process's stderr. Every line it writes
carries, besides time, level, logger and message:

- the process's own fields, given at setup (`actor`, a session host's `partition`);
- the ids of the current context (`with log_context(wamid=..., partition=...)`): a contextvar, so
  they follow a task and the tasks it starts, never another chat's task;
- the ids a call passes itself: `log.info("...", extra=log_ids(turn_id=..., chat=key))`.

The ids: `wamid` (the inbound message or messages, comma-joined), `turn_id`, `outbound_id`,
`chat` (`chat_hash`: never the chat key, which holds the user's phone number) and `partition`.
Every secret named at setup is replaced by `***` in the message, its arguments, the exception
text and the ids before anything is written. See docs/logging.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Literal, TypedDict, Unpack

from pydantic import SecretStr

if TYPE_CHECKING:
    from whatsray.settings import Settings

__all__ = [
    "FIELDS",
    "REDACTED",
    "ContextFilter",
    "IdValue",
    "JsonFormatter",
    "LogFormat",
    "LogIds",
    "LogSetup",
    "RedactFilter",
    "TextFormatter",
    "bind_ids",
    "chat_hash",
    "clear_ids",
    "configure_logging",
    "log_context",
    "log_ids",
]

LogFormat = Literal["json", "text"]
IdValue = str | int

# Written in this order after the message: the process's field, then the correlation ids.
FIELDS = ("actor", "partition", "chat", "wamid", "turn_id", "outbound_id")
REDACTED = "***"
# Libraries whose INFO lines are noise: httpx logs each request (CPU on the send path too),
# APScheduler each job it adds or runs (the scheduler logs what matters itself).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler")

_HASHED = re.compile(r"[0-9a-f]{12}")
_ids: ContextVar[Mapping[str, IdValue] | None] = ContextVar("whatsray_log_ids", default=None)


class LogIds(TypedDict, total=False):
    wamid: str | Iterable[str] | None
    turn_id: str | None
    outbound_id: str | None
    chat: object  # a ChatKey or its string: only its hash is kept
    partition: int | None


def chat_hash(chat: object) -> str:
    """A chat's name in logs: the first 12 hex digits of the sha256 of its key (`str(chat)`).
    A value that is such a hash already is kept (a chat key always holds a ':')."""
    if isinstance(chat, str) and _HASHED.fullmatch(chat):
        return chat
    return hashlib.sha256(str(chat).encode()).hexdigest()[:12]


def log_ids(**ids: Unpack[LogIds]) -> dict[str, IdValue]:
    """The ids as a record carries them (`extra=log_ids(...)`): unset ones left out, the chat
    hashed, several wamids comma-joined (one type per field, which log stores want)."""
    out: dict[str, IdValue] = {}
    wamid = ids.get("wamid")
    if wamid is not None:
        joined = wamid if isinstance(wamid, str) else ",".join(wamid)
        if joined:
            out["wamid"] = joined
    for key in ("turn_id", "outbound_id"):
        value = ids.get(key)
        if value is not None:
            out[key] = str(value)
    chat = ids.get("chat")
    if chat is not None:
        out["chat"] = chat_hash(chat)
    partition = ids.get("partition")
    if partition is not None:
        out["partition"] = int(partition)
    return out


def bind_ids(**ids: Unpack[LogIds]) -> Token[Mapping[str, IdValue] | None]:
    """Add ids to the current context for the rest of the task (`log_context` for a block): a
    task runs in a copy of the context it was started from, so no other task sees them."""
    return _ids.set({**(_ids.get() or {}), **log_ids(**ids)})


def clear_ids() -> None:
    """Drop the context's ids: for a task that serves many chats (a batch's flush) and was
    started from one of them."""
    _ids.set(None)


@contextmanager
def log_context(**ids: Unpack[LogIds]) -> Iterator[None]:
    """These ids on every record logged in the block, and in the tasks started from it."""
    token = bind_ids(**ids)
    try:
        yield
    finally:
        _ids.reset(token)


class ContextFilter(logging.Filter):
    """Puts the ids on each record: a call's own `extra` wins, then the context's, then the
    process's fields. A `chat` that is not a hash already is hashed: a raw key is never written."""

    def __init__(self, fields: Mapping[str, IdValue] | None = None) -> None:
        super().__init__()
        self._fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        for source in (_ids.get(), self._fields):
            if source:
                for key, value in source.items():
                    attrs.setdefault(key, value)
        chat = attrs.get("chat")
        if chat is not None:
            attrs["chat"] = chat_hash(chat)
        return True


_EXCEPTIONS = logging.Formatter()


class RedactFilter(logging.Filter):
    """Replaces each secret with `***` in the final message, the exception text, the stack and
    the ids. It formats the message once (args applied), so no later step can put one back."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first: a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTIONS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        attrs = record.__dict__
        for key in FIELDS:
            value = attrs.get(key)
            if isinstance(value, str):
                attrs[key] = self.redact(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the
    fields and ids the record has, and `exception` (its traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attrs = record.__dict__
        for key in FIELDS:
            value = attrs.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a line is valid JSON and one line whatever the message holds.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, then the traceback on the following lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        attrs = record.__dict__
        suffix = "".join(f" {k}={attrs[k]}" for k in FIELDS if attrs.get(k) is not None)
        return super().formatMessage(record) + suffix


@dataclass(frozen=True)
class LogSetup:
    """How a process logs. Picklable: the composition root hands one to every actor. The
    secrets stay `SecretStr`, so no repr of it (an actor's arguments) shows them."""

    format: LogFormat = "text"
    secrets: tuple[SecretStr, ...] = ()
    level: int = logging.INFO
    fields: Mapping[str, IdValue] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, *, level: int | None = None) -> LogSetup:
        """`level`: this process's own (the CLI's `-v`); by default `WHATSRAY_LOG_LEVEL`."""
        named = (settings.app_secret, settings.access_token, settings.verify_token)
        secrets = tuple(s for s in (*named, settings.admin_token) if s is not None)
        if level is None:
            level = logging.getLevelNamesMapping()[settings.log_level]
        return cls(format=settings.effective_log_format, secrets=secrets, level=level)

    def for_process(self, **fields: IdValue) -> LogSetup:
        """The same setup with this process's fields (`actor=...`, `partition=...`)."""
        return replace(self, fields={**self.fields, **fields})


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler `configure_logging` installs (told apart from any other on the root)."""


def configure_logging(
    setup: LogSetup | None, stream: IO[str] | None = None
) -> logging.Handler | None:
    """Route this process's records through one handler with `setup`'s format, fields and
    redaction; returns it. It replaces every handler on the root logger (an earlier call's, a
    `basicConfig`, Ray's `LoggingConfig`): another one would write each line again, unredacted.
    None leaves logging as it is (an actor's class used in process, in tests).

    The default stream is the process's own stderr (`sys.__stderr__`): a Serve replica may have
    swapped `sys.stderr` for a logger, which would wrap each line in its own format."""
    if setup is None:
        return None
    target = stream if stream is not None else (sys.__stderr__ or sys.stderr)
    handler = _Handler(target)
    handler.setFormatter(JsonFormatter() if setup.format == "json" else TextFormatter())
    handler.addFilter(ContextFilter(setup.fields))
    if setup.secrets:
        handler.addFilter(RedactFilter(s.get_secret_value() for s in setup.secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(setup.level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(setup.level, logging.WARNING))
    return handler
