"""A small async client of whatsray's REST API (docs/admin-api.md, the jobs API): all the MCP
server knows about a running whatsray.

The MCP server holds no store and no outbox of its own: every tool is one HTTP request here, so
the API's rules (auth, the 24-hour window, validation, rate limits) apply to MCP clients exactly
as to anyone else. A refusal comes back as `ApiError` carrying the API's own `error` code and
`message`; a whatsray that cannot be reached is `ApiUnreachable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

__all__ = ["ApiError", "ApiUnreachable", "WhatsrayApi", "check_api_url"]

JsonObject = dict[str, Any]

# Reads are quick; a send answers once recorded (202), a dead-letter replay once settled.
DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    """The API answered with an error status (4xx or 5xx)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        method: str,
        path: str,
        retry_after: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {error}: {message}")
        self.status = status
        self.error = error  # the ErrorBody's `error` code, e.g. "outside_window"
        self.message = message  # the ErrorBody's one sentence naming the problem
        # For an invalid request, its first field's type, e.g. "unknown_phone_number_id".
        self.reason = reason
        self.method = method
        self.path = path
        self.retry_after = retry_after


class ApiUnreachable(Exception):
    """No HTTP answer at all: whatsray is down, the URL is wrong, or the request timed out."""


def check_api_url(url: str) -> str:
    """The base URL without a trailing slash; `ValueError` naming the problem if it is not one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the whatsray API URL must be http(s)://host[:port], got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"the whatsray API URL takes no query or fragment, got {url!r}")
    return url.strip().rstrip("/")


def _segment(value: str, what: str) -> str:
    """One path segment, fully escaped (a chat key's ':' or a stray '/' stay inside it).

    "", "." and ".." are refused: URL normalisation would turn them into another route."""
    if value.strip() in ("", ".", ".."):
        raise ValueError(f"{what} must not be empty, '.' or '..', got {value!r}")
    return quote(value, safe="")


def _job_path(job_id: str, action: str = "") -> str:
    return f"/api/jobs/{_segment(job_id, 'job_id')}{action}"


def _error_of(response: httpx.Response) -> tuple[str, str, str | None]:
    """(error, message, reason) from the API's `ErrorBody` (reason: the first failing field's
    type), or the best we can say without one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error, message, detail = body.get("error"), body.get("message"), body.get("detail")
        if isinstance(error, str) and isinstance(message, str):
            first = detail[0] if isinstance(detail, list) and detail else None
            reason = first.get("type") if isinstance(first, dict) else None
            return error, message, reason if isinstance(reason, str) else None
        if isinstance(detail, str):  # a plain FastAPI error (a route outside the admin guard)
            return response.reason_phrase.lower().replace(" ", "_"), detail, None
    text = response.text.strip()[:300] or response.reason_phrase
    return f"http_{response.status_code}", text, None


class WhatsrayApi:
    """The REST API of one whatsray deployment, authenticated with its admin token.

    Use it as an async context manager (it owns one pooled `httpx.AsyncClient`). `transport`
    is for tests (an `httpx.ASGITransport`).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not token or token.strip() != token:
            raise ValueError("the admin token must be non-empty, without surrounding spaces")
        self.base_url = check_api_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"WhatsrayApi({self.base_url!r}, token=***)"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        """One call; the JSON object it answered (`{}` for an empty body, `{"result": v}` for
        JSON that is not an object). Raises `ApiError` or `ApiUnreachable`."""
        try:
            response = await self._http.request(
                method, path, params=dict(params) if params else None, json=json
            )
        except httpx.TimeoutException as exc:
            raise ApiUnreachable(
                f"whatsray at {self.base_url} did not answer {method} {path} in time ({exc!r})."
            ) from None
        except httpx.TransportError as exc:
            raise ApiUnreachable(
                f"cannot reach whatsray at {self.base_url} ({type(exc).__name__}: {exc});"
                " is it running, and is the API URL right?"
            ) from None
        if response.status_code >= 400:
            error, message, reason = _error_of(response)
            raise ApiError(
                response.status_code,
                error,
                message,
                method=method,
                path=path,
                retry_after=response.headers.get("Retry-After"),
                reason=reason,
            )
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                "invalid_response",
                f"the API answered {response.status_code} with a body that is not JSON",
                method=method,
                path=path,
            ) from None
        return body if isinstance(body, dict) else {"result": body}

    # -- the admin API ---------------------------------------------------------------------

    async def send_message(
        self,
        to: str,
        text: str,
        idempotency_key: str | None = None,
        phone_number_id: str | None = None,
    ) -> JsonObject:
        """`phone_number_id`: the business number to send from; None: the deployment's first."""
        body: JsonObject = {"to": to, "text": text}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if phone_number_id is not None:
            body["phone_number_id"] = phone_number_id
        return await self.request("POST", "/api/send-message", json=body)

    async def get_messages(
        self, chat: str, limit: int = 50, before: int | None = None
    ) -> JsonObject:
        params: dict[str, str | int | bool] = {"limit": limit}
        if before is not None:
            params["before"] = before
        path = "/api/messages/" + _segment(chat, "chat")
        return await self.request("GET", path, params=params)

    async def list_chats(
        self, limit: int = 50, offset: int = 0, phone_number_id: str | None = None
    ) -> JsonObject:
        params: dict[str, str | int | bool] = {"limit": limit, "offset": offset}
        if phone_number_id is not None:
            params["phone_number_id"] = phone_number_id
        return await self.request("GET", "/api/chats", params=params)

    async def search_contacts(
        self, q: str, limit: int = 20, phone_number_id: str | None = None
    ) -> JsonObject:
        params: dict[str, str | int | bool] = {"q": q, "limit": limit}
        if phone_number_id is not None:
            params["phone_number_id"] = phone_number_id
        return await self.request("GET", "/api/contacts/search", params=params)

    # -- the jobs API ----------------------------------------------------------------------

    async def create_job(self, body: Mapping[str, Any]) -> JsonObject:
        return await self.request("POST", "/api/jobs", json=body)

    async def list_jobs(self, params: Mapping[str, str | int | bool]) -> JsonObject:
        return await self.request("GET", "/api/jobs", params=params)

    async def get_job(self, job_id: str) -> JsonObject:
        return await self.request("GET", _job_path(job_id))

    async def update_job(self, job_id: str, changes: Mapping[str, Any]) -> JsonObject:
        return await self.request("PATCH", _job_path(job_id), json=changes)

    async def delete_job(self, job_id: str) -> JsonObject:
        return await self.request("DELETE", _job_path(job_id))

    async def start_job(self, job_id: str) -> JsonObject:
        return await self.request("POST", _job_path(job_id, "/start"))

    async def stop_job(self, job_id: str) -> JsonObject:
        return await self.request("POST", _job_path(job_id, "/stop"))
