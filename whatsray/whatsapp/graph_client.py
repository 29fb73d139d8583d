"""Async client for the WhatsApp Cloud API (Meta Graph API): send messages, read receipts, media.

The `httpx.AsyncClient` is injected (its timeouts, pool and transport are the owner's choice, and
tests hand in one bound to the emulator), so this class never opens or closes connections itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from whatsray.retries import parse_retry_after
from whatsray.whatsapp.errors import (
    GraphTimeoutError,
    MetaApiError,
    TransportError,
    UnknownMetaError,
    error_from_response,
)
from whatsray.whatsapp.messages import (
    ListMessage,
    ListSection,
    MarkAsRead,
    MediaMessage,
    MediaType,
    Message,
    ReactionMessage,
    ReplyButton,
    ReplyButtonsMessage,
    TemplateComponent,
    TemplateMessage,
    TextMessage,
    validate_send_body,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"


class SendResult(BaseModel):
    """What Meta answers to a send: the new message's wamid and who it resolved the recipient to."""

    model_config = ConfigDict(frozen=True)

    wamid: str
    wa_id: str | None = None  # may differ from `input`; absent for some BSUID recipients
    input: str | None = None
    user_id: str | None = None  # the BSUID, when Meta returns one
    message_status: str | None = None  # template pacing ("accepted", "held_for_quality_assessment")


class MediaInfo(BaseModel):
    """`GET /{media_id}`: where to download the file. The URL expires after 5 minutes."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    mime_type: str
    sha256: str | None = None
    file_size: int | None = None


class GraphClient:
    """Calls the Graph API for one business phone number.

    Every message is validated against Meta's limits before anything is sent
    (`MessageValidationError`, nothing sent). A non-2xx answer raises the typed Meta error from
    `error_from_response` (see `errors.py`; `is_transient` and `retry_after` say what to do).
    Network failures become `TransportError` and timeouts `GraphTimeoutError`, once, with the
    httpx exception as `__cause__`.

    There are no retries in here, on purpose: whether resending is safe (a timed-out send may
    have been delivered) and how long to wait (pair rate, throughput) is the outbox's policy.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        access_token: str,
        phone_number_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self._http = http
        self._token = access_token
        self.phone_number_id = phone_number_id
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version

    def __repr__(self) -> str:  # never show the token
        return f"GraphClient(phone_number_id={self.phone_number_id!r}, base_url={self.base_url!r})"

    @property
    def messages_url(self) -> str:
        return self._url(f"{self.phone_number_id}/messages")

    # --- Sending ---------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        """Send any outbound message and return Meta's answer (the new wamid)."""
        body = message.to_graph_body()
        validate_send_body(body)  # the model checked itself; this also catches model_construct
        data = await self._request_json("POST", self.messages_url, json=body)
        return _send_result(data)

    async def send_text(
        self,
        to: str,
        body: str,
        *,
        preview_url: bool = False,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        return await self.send(
            TextMessage(
                to=to,
                body=body,
                preview_url=preview_url,
                reply_to=reply_to,
                callback_data=callback_data,
            )
        )

    async def send_media(
        self,
        to: str,
        media_type: MediaType,
        *,
        media_id: str | None = None,
        link: str | None = None,
        caption: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        """Send an image, video, audio, document or sticker by uploaded id or by link."""
        return await self.send(
            MediaMessage(
                to=to,
                media_type=media_type,
                media_id=media_id,
                link=link,
                caption=caption,
                filename=filename,
                reply_to=reply_to,
                callback_data=callback_data,
            )
        )

    async def send_template(
        self,
        to: str,
        name: str,
        language: str,
        components: Sequence[TemplateComponent] = (),
        *,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        return await self.send(
            TemplateMessage(
                to=to,
                name=name,
                language=language,
                components=tuple(components),
                reply_to=reply_to,
                callback_data=callback_data,
            )
        )

    async def send_buttons(
        self,
        to: str,
        body: str,
        buttons: Sequence[ReplyButton | tuple[str, str]],
        *,
        header: str | None = None,
        footer: str | None = None,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        """Up to three reply buttons; each is a `ReplyButton` or an `(id, title)` pair."""
        return await self.send(
            ReplyButtonsMessage(
                to=to,
                body=body,
                buttons=tuple(
                    b if isinstance(b, ReplyButton) else ReplyButton(id=b[0], title=b[1])
                    for b in buttons
                ),
                header=header,
                footer=footer,
                reply_to=reply_to,
                callback_data=callback_data,
            )
        )

    async def send_list(
        self,
        to: str,
        body: str,
        button: str,
        sections: Sequence[ListSection],
        *,
        header: str | None = None,
        footer: str | None = None,
        reply_to: str | None = None,
        callback_data: str | None = None,
    ) -> SendResult:
        return await self.send(
            ListMessage(
                to=to,
                body=body,
                button=button,
                sections=tuple(sections),
                header=header,
                footer=footer,
                reply_to=reply_to,
                callback_data=callback_data,
            )
        )

    async def send_reaction(
        self, to: str, message_id: str, emoji: str, *, callback_data: str | None = None
    ) -> SendResult:
        """React to `message_id` (a reaction cannot quote a message, so no `reply_to`)."""
        return await self.send(
            ReactionMessage(to=to, message_id=message_id, emoji=emoji, callback_data=callback_data)
        )

    async def remove_reaction(
        self, to: str, message_id: str, *, callback_data: str | None = None
    ) -> SendResult:
        """Remove our reaction to `message_id` (Meta: a reaction with an empty emoji)."""
        return await self.send_reaction(to, message_id, "", callback_data=callback_data)

    async def mark_as_read(self, message_id: str, typing_indicator: bool = False) -> None:
        """Mark `message_id` (and earlier ones) read; the typing indicator lasts up to 25 s."""
        body = MarkAsRead(message_id=message_id, typing_indicator=typing_indicator)
        await self._request_json("POST", self.messages_url, json=body.to_graph_body())

    # --- Media ----------------------------------------------------------------------------

    async def upload_media(self, data: bytes, mime_type: str, filename: str) -> str:
        """Upload a file for later sends; returns the media id (valid for 30 days)."""
        result = await self._request_json(
            "POST",
            self._url(f"{self.phone_number_id}/media"),
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
        )
        media_id = result.get("id")
        if not isinstance(media_id, str):
            raise _malformed("upload answer without an id", result)
        return media_id

    async def get_media(self, media_id: str) -> MediaInfo:
        """Where to download `media_id` from; fetch a fresh one if the URL is older than 5 min."""
        result = await self._request_json(
            "GET", self._url(media_id), params={"phone_number_id": self.phone_number_id}
        )
        try:
            return MediaInfo.model_validate(result)
        except ValueError as exc:
            raise _malformed("media answer without id, url or mime_type", result) from exc

    async def download_media(self, url: str) -> bytes:
        """Download a media URL from `get_media` (it needs the Bearer token too)."""
        response = await self._request("GET", url)
        return response.content

    async def delete_media(self, media_id: str) -> None:
        await self._request_json(
            "DELETE", self._url(media_id), params={"phone_number_id": self.phone_number_id}
        )

    # --- Plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path}"

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:  # before TransportError: it is a subclass
            raise GraphTimeoutError(f"{method} {url} timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {url} failed: {exc!r}") from exc
        if not response.is_success:
            raise _error_with_retry_after(response)
        return response

    async def _request_json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._request(method, url, **kwargs)
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _malformed(
                f"HTTP {response.status_code} body is not a JSON object",
                {"body": response.content[:200].decode("utf-8", "replace")},
                response.status_code,
            )
        return data


def _error_with_retry_after(response: httpx.Response) -> MetaApiError:
    error = error_from_response(response.status_code, response.content)
    retry_after = parse_retry_after(response.headers)
    if retry_after is not None:
        error.retry_after = retry_after
    elif "Retry-After" in response.headers:
        logger.info("ignoring unusable Retry-After header %r", response.headers["Retry-After"])
    return error


def _malformed(problem: str, raw: dict[str, Any], http_status: int = 200) -> UnknownMetaError:
    # A 2xx we cannot read: not transient, since the request may well have been applied.
    return UnknownMetaError(
        f"malformed Graph API answer: {problem}", http_status=http_status, raw=raw
    )


def _send_result(data: dict[str, Any]) -> SendResult:
    messages = data.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if not isinstance(first, dict) or not isinstance(first.get("id"), str):
        raise _malformed("send answer without messages[0].id", data)
    contacts = data.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts else {}
    contact = contact if isinstance(contact, dict) else {}

    def text(obj: dict[str, Any], key: str) -> str | None:
        value = obj.get(key)
        return value if isinstance(value, str) else None

    return SendResult(
        wamid=first["id"],
        wa_id=text(contact, "wa_id"),
        input=text(contact, "input"),
        user_id=text(contact, "user_id"),
        message_status=text(first, "message_status"),
    )
