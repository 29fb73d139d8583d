"""The control API under `/emulator/` (documented in docs/emulator.md; a stable interface).

Tests and tools use it to act as users, read what the bot sent, inject faults and move time.
A bad body gets HTTP 400 with `{"error": {"message": ..., "details": [...]}}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from importlib import resources
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.emulator.faults import FaultSpec
from whatsray.whatsapp.emulator.inbound import InboundError, InboundRequest
from whatsray.whatsapp.emulator.inbound_messages import InboundMessageError
from whatsray.whatsapp.emulator.state import to_json

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdvanceRequest(_Strict):
    seconds: float = Field(ge=0)


class WindowRequest(_Strict):
    user: str = Field(min_length=1)
    phone_number_id: str | None = None
    last_inbound_at: float | None = None
    age_seconds: float | None = Field(default=None, ge=0)
    open: bool | None = None

    @model_validator(mode="after")
    def _one_way(self) -> WindowRequest:
        given = [
            n for n in ("last_inbound_at", "age_seconds", "open") if n in self.model_fields_set
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of last_inbound_at, age_seconds, open")
        return self


class MediaRequest(_Strict):
    mime_type: str = Field(min_length=1)
    data_base64: str | None = None
    text: str | None = None
    filename: str | None = None
    phone_number_id: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MediaRequest:
        if (self.data_base64 is None) == (self.text is None):
            raise ValueError("give exactly one of data_base64 and text")
        return self


class WebhookUrlRequest(_Strict):
    url: str | None


class SettleRequest(_Strict):
    timeout: float = Field(default=30.0, gt=0, le=600)


def _error(status: int, message: str, details: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


async def _parse(request: Request, model: type[M]) -> M | JSONResponse:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _error(400, "the body is not valid JSON")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors(include_url=False)
        ]
        return _error(400, f"invalid {model.__name__}", details)


def _int_param(request: Request, name: str) -> int:
    value = request.query_params.get(name, "0")
    return int(value) if value.isdigit() else 0


class ControlApi:
    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/config", self.config, methods=["GET"]),
            Route("/webhook-url", self.set_webhook_url, methods=["PUT"]),
            Route("/inbound", self.inbound, methods=["POST"]),
            Route("/outbound", self.outbound, methods=["GET"]),
            Route("/requests", self.requests, methods=["GET"]),
            Route("/webhooks", self.webhooks, methods=["GET"]),
            Route("/webhooks/pending", self.pending_webhooks, methods=["GET"]),
            Route("/settle", self.settle, methods=["POST"]),
            Route("/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/reset", self.reset, methods=["POST"]),
            Route("/clock", self.clock, methods=["GET"]),
            Route("/clock/advance", self.advance_clock, methods=["POST"]),
            Route("/windows", self.windows, methods=["GET", "POST"]),
            Route("/media", self.create_media, methods=["POST"]),
            Route("/console", self.console, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "pending_webhooks": self._emulator.delivery.pending})

    async def config(self, request: Request) -> Response:
        config = self._emulator.config
        public = config.model_dump(exclude={"app_secret", "access_token"})
        public["webhook_url"] = self._emulator.webhook_url
        return JSONResponse(public)

    async def set_webhook_url(self, request: Request) -> Response:
        parsed = await _parse(request, WebhookUrlRequest)
        if isinstance(parsed, Response):
            return parsed
        self._emulator.webhook_url = parsed.url
        return JSONResponse({"webhook_url": parsed.url})

    async def inbound(self, request: Request) -> Response:
        parsed = await _parse(request, InboundRequest)
        if isinstance(parsed, Response):
            return parsed
        try:
            status, answer = await self._emulator.receive_inbound(parsed)
        except InboundError as exc:
            return _error(exc.status, exc.message)
        except InboundMessageError as exc:
            return _error(400, str(exc))
        return JSONResponse(answer, status_code=status)

    async def outbound(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "message")
        if kind not in ("message", "read", "all"):
            return _error(400, "kind must be message, read or all")
        records = self._emulator.outbound(
            to=request.query_params.get("to"), kind=kind, since=_int_param(request, "since")
        )
        return JSONResponse([to_json(r) for r in records])

    async def requests(self, request: Request) -> Response:
        records = self._emulator.requests(since=_int_param(request, "since"))
        return JSONResponse([to_json(r) for r in records])

    async def webhooks(self, request: Request) -> Response:
        attempts = self._emulator.webhook_attempts(
            kind=request.query_params.get("kind"), since=_int_param(request, "since")
        )
        return JSONResponse([to_json(a) for a in attempts])

    async def pending_webhooks(self, request: Request) -> Response:
        # Never waits: tests poll it until `pending` is 0 instead of sleeping.
        return JSONResponse(self._emulator.delivery.pending_counts())

    async def settle(self, request: Request) -> Response:
        parsed = await _parse(request, SettleRequest)
        if isinstance(parsed, Response):
            return parsed
        try:
            await self._emulator.settle(parsed.timeout)
        except TimeoutError:
            return _error(504, f"webhooks still due after {parsed.timeout} s")
        return JSONResponse({"pending_webhooks": self._emulator.delivery.pending})

    async def faults(self, request: Request) -> Response:
        faults = self._emulator.faults
        if request.method == "DELETE":
            faults.clear()
        elif request.method == "POST":
            parsed = await _parse(request, FaultSpec)
            if isinstance(parsed, Response):
                return parsed
            faults.apply(parsed)
        return JSONResponse(faults.describe())

    async def reset(self, request: Request) -> Response:
        self._emulator.reset()
        return JSONResponse({"reset": True})

    async def clock(self, request: Request) -> Response:
        return JSONResponse({"now": self._emulator.clock.now()})

    async def advance_clock(self, request: Request) -> Response:
        parsed = await _parse(request, AdvanceRequest)
        if isinstance(parsed, Response):
            return parsed
        try:
            now = self._emulator.advance_clock(parsed.seconds)
        except TypeError as exc:
            return _error(409, str(exc))
        return JSONResponse({"now": now})

    async def windows(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self._emulator.windows())
        parsed = await _parse(request, WindowRequest)
        if isinstance(parsed, Response):
            return parsed
        pnid = parsed.phone_number_id or self._emulator.config.phone_numbers[0].id
        if self._emulator.config.number(pnid) is None:
            return _error(400, f"unknown phone_number_id {pnid!r}")
        now = self._emulator.clock.now()
        if parsed.age_seconds is not None:
            at: float | None = now - parsed.age_seconds
        elif parsed.open is not None:
            at = now if parsed.open else None
        else:
            at = parsed.last_inbound_at
        self._emulator.set_last_inbound(pnid, parsed.user, at)
        return JSONResponse(self._emulator.window(pnid, parsed.user))

    async def create_media(self, request: Request) -> Response:
        parsed = await _parse(request, MediaRequest)
        if isinstance(parsed, Response):
            return parsed
        if parsed.text is not None:
            data = parsed.text.encode()
        else:
            try:
                data = base64.b64decode(parsed.data_base64 or "", validate=True)
            except (binascii.Error, ValueError):
                return _error(400, "data_base64 is not valid base64")
        item = self._emulator.media.create(
            data,
            mime_type=parsed.mime_type,
            filename=parsed.filename,
            phone_number_id=parsed.phone_number_id,
        )
        return JSONResponse(
            {"id": item.id, "mime_type": item.mime_type, "file_size": item.file_size}
        )

    async def console(self, request: Request) -> Response:
        page = resources.files("whatsray.whatsapp.emulator").joinpath("static/console.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))
