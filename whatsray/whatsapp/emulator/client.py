"""A small async client for the emulator's control API: act as one WhatsApp user, read replies.

`whatsray chat` and tests use it. It takes an injected `httpx.AsyncClient` (the owner decides
the base URL, timeouts and transport: `ASGITransport` in-process, loopback in integration tests)
and never opens or closes connections itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# Replies are polled: the control API has no push channel, and a poll is one cheap GET.
DEFAULT_POLL_INTERVAL_S = 0.25


class EmulatorClientError(Exception):
    """The emulator could not be reached or refused a request."""


class EmulatorUnreachable(EmulatorClientError):
    """Nothing answered at the emulator's URL (refused connection, timeout, DNS)."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"nothing answers at {url} ({cause})")
        self.url = url


class EmulatorRequestError(EmulatorClientError):
    """The emulator answered with an error (a bad body, no webhook URL configured, ...)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"emulator answered HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class InboundReceipt:
    """What `POST /emulator/inbound` said: the new message id and whether the webhook got it.

    A message is recorded (and the user's window opened) even when the webhook failed; the
    emulator then keeps retrying in the background while `retrying` is true."""

    wamid: str
    delivered: bool
    status_code: int | None = None
    retrying: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message the bot sent, as `GET /emulator/outbound` lists it."""

    seq: int
    to: str | None
    phone_number_id: str | None
    body: dict[str, Any]
    wamid: str | None
    outcome: str  # "accepted" | "rejected"
    error_code: int | None = None
    error_details: str | None = None
    statuses: tuple[str, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    @property
    def type(self) -> str:
        kind = self.body.get("type")
        return kind if isinstance(kind, str) else "unknown"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundMessage:
        """Tolerant: fields the emulator may add later are ignored, odd values defaulted."""
        body = data.get("body")
        code = data.get("error_code")
        return cls(
            seq=int(data.get("seq") or 0),
            to=_opt_str(data.get("to")),
            phone_number_id=_opt_str(data.get("phone_number_id")),
            body=body if isinstance(body, dict) else {},
            wamid=_opt_str(data.get("wamid")),
            outcome=str(data.get("outcome") or "accepted"),
            error_code=code if isinstance(code, int) else None,
            error_details=_opt_str(data.get("error_details")),
            statuses=tuple(str(s) for s in data.get("statuses") or ()),
        )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class EmulatorClient:
    """Acts as WhatsApp users through the emulator's control API (`/emulator/...`).

    `http` must have the emulator's URL as its `base_url` (e.g. `http://127.0.0.1:8025`).
    `sleep` and `clock` are injectable so that `wait_for_replies` runs on a fake clock in tests.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._sleep = sleep
        self._clock = clock

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def health(self) -> dict[str, Any]:
        """`GET /emulator/health`; raises `EmulatorRequestError` when something else answers."""
        data = await self._json("GET", "/emulator/health")
        if not isinstance(data, dict) or data.get("ok") is not True:
            raise EmulatorRequestError(200, "the health check did not answer like the emulator")
        return data

    async def send(
        self,
        from_: str,
        message: dict[str, Any],
        *,
        profile_name: str | None = None,
        phone_number_id: str | None = None,
    ) -> InboundReceipt:
        """Send one inbound message in the emulator's short form (`{"type": "text", ...}`).

        A webhook that did not answer 200 is not an error here (HTTP 502 from the emulator): the
        message exists and is retried; the receipt says so."""
        body: dict[str, Any] = {"from": from_, "message": message}
        if profile_name is not None:
            body["profile_name"] = profile_name
        if phone_number_id is not None:
            body["phone_number_id"] = phone_number_id
        status_code, data = await self._request(
            "POST", "/emulator/inbound", json=body, also_ok=(502,)
        )
        if not isinstance(data, dict) or not isinstance(data.get("wamid"), str):
            raise EmulatorRequestError(status_code, "/emulator/inbound answered without a wamid")
        delivery = data.get("delivery")
        delivery = delivery if isinstance(delivery, dict) else {}
        status = delivery.get("status_code")
        return InboundReceipt(
            wamid=data["wamid"],
            delivered=bool(delivery.get("delivered")),
            status_code=status if isinstance(status, int) else None,
            retrying=bool(delivery.get("retrying")),
            error=_opt_str(delivery.get("error")),
        )

    async def send_text(
        self,
        from_: str,
        text: str,
        profile_name: str | None = None,
        *,
        phone_number_id: str | None = None,
    ) -> str:
        """Send a text message as user `from_`; returns its wamid."""
        receipt = await self.send(
            from_,
            {"type": "text", "text": text},
            profile_name=profile_name,
            phone_number_id=phone_number_id,
        )
        return receipt.wamid

    async def replies(self, to: str, since: int = 0) -> list[OutboundMessage]:
        """Messages the bot sent to `to` with a `seq` above `since`, oldest first (accepted and
        rejected sends alike; mark-as-read calls are not messages and are left out)."""
        data = await self._json(
            "GET", "/emulator/outbound", params={"to": to, "since": str(since), "kind": "message"}
        )
        if not isinstance(data, list):
            raise EmulatorRequestError(200, "/emulator/outbound did not answer with a list")
        return [OutboundMessage.from_json(item) for item in data if isinstance(item, dict)]

    async def last_seq(self, to: str) -> int:
        """The `seq` of the last message sent to `to` so far (0 if none): read replies after it
        to see only what is new."""
        return max((m.seq for m in await self.replies(to)), default=0)

    async def wait_for_replies(
        self,
        to: str,
        since: int = 0,
        *,
        count: int = 1,
        max_wait: float = 10.0,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    ) -> list[OutboundMessage]:
        """Poll until at least `count` messages after `since` were sent to `to`, or `max_wait`
        seconds passed; returns what arrived (possibly fewer than `count`, never raises on
        timeout: the caller decides whether too few is a failure)."""
        deadline = self._clock() + max_wait
        while True:
            found = await self.replies(to, since)
            if len(found) >= count or self._clock() >= deadline:
                return found
            await self._sleep(poll_interval)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, data = await self._request(method, path, **kwargs)
        return data

    async def _request(
        self, method: str, path: str, *, also_ok: tuple[int, ...] = (), **kwargs: Any
    ) -> tuple[int, Any]:
        """The status and parsed JSON body (None if not JSON) of a successful answer."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, timed out, DNS...
            raise EmulatorUnreachable(self.url, str(exc) or type(exc).__name__) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success or response.status_code in also_ok:
            return response.status_code, data
        raise EmulatorRequestError(response.status_code, _error_message(data, response))


def _error_message(data: Any, response: httpx.Response) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
        details = error.get("details")
        return f"{message} {details}" if details else message
    return response.text[:200] or response.reason_phrase
