"""GraphClient failure wrapping, through `httpx.MockTransport`.

Only what the emulator cannot produce lives here: refused connections, timeouts, bodies that are
not JSON. Everything else is tested against the real emulator, further down.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from whatsray.whatsapp.errors import (
    GraphTimeoutError,
    MessageValidationError,
    ServerError,
    ThroughputLimitError,
    TransportError,
    UnknownMetaError,
)
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.messages import (
    TextMessage,
)

TOKEN = "secret-token"
PHONE = "+16505551234"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def seen() -> list[httpx.Request]:
    """Every request that reached the transport."""
    return []


def make_client(handler: Handler, seen: list[httpx.Request]) -> GraphClient:
    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(recording))
    return GraphClient(http, TOKEN, "123", base_url="https://graph.test/", api_version="v99.0")


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_network_failure_wrapped_once_as_transport_error(
    exc: Exception, seen: list[httpx.Request]
) -> None:
    client = make_client(raising(exc), seen)
    with pytest.raises(TransportError) as caught:
        await client.send_text(PHONE, "hi")
    assert type(caught.value) is TransportError
    assert caught.value.__cause__ is exc
    assert caught.value.is_transient
    assert "POST https://graph.test/v99.0/123/messages" in caught.value.message


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("connect"),
        httpx.ReadTimeout("read"),
        httpx.WriteTimeout("write"),
        httpx.PoolTimeout("pool"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_timeout_wrapped_once_as_graph_timeout(
    exc: Exception, seen: list[httpx.Request]
) -> None:
    client = make_client(raising(exc), seen)
    with pytest.raises(GraphTimeoutError) as caught:
        await client.get_media("media-1")
    assert type(caught.value) is GraphTimeoutError
    assert caught.value.__cause__ is exc
    assert not isinstance(caught.value.__cause__, GraphTimeoutError)
    assert caught.value.is_transient


async def test_non_json_502_is_transient_unknown_error(seen: list[httpx.Request]) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    client = make_client(lambda r: httpx.Response(502, content=html), seen)
    with pytest.raises(UnknownMetaError) as caught:
        await client.send_text(PHONE, "hi")
    assert caught.value.http_status == 502
    assert caught.value.is_transient
    assert "502 Bad Gateway" in (caught.value.details or "")
    assert caught.value.__cause__ is None


async def test_non_json_2xx_is_not_transient(seen: list[httpx.Request]) -> None:
    # The send may have gone out; calling it transient would invite a duplicate.
    client = make_client(lambda r: httpx.Response(200, content=b"OK"), seen)
    with pytest.raises(UnknownMetaError) as caught:
        await client.send_text(PHONE, "hi")
    assert not caught.value.is_transient
    assert caught.value.http_status == 200


async def test_2xx_without_message_id_is_reported(seen: list[httpx.Request]) -> None:
    client = make_client(lambda r: httpx.Response(200, json={"messages": []}), seen)
    with pytest.raises(UnknownMetaError, match=r"messages\[0\]\.id"):
        await client.send_text(PHONE, "hi")


async def test_retry_after_header_overrides_the_default(seen: list[httpx.Request]) -> None:
    body = {"error": {"code": 130429, "message": "(#130429) Rate limit hit"}}
    client = make_client(
        lambda r: httpx.Response(429, json=body, headers={"Retry-After": "7"}), seen
    )
    with pytest.raises(ThroughputLimitError) as caught:
        await client.send_text(PHONE, "hi")
    assert caught.value.retry_after == 7.0


async def test_garbled_retry_after_keeps_the_default(seen: list[httpx.Request]) -> None:
    body = {"error": {"code": 131000, "message": "(#131000) Something went wrong"}}
    client = make_client(
        lambda r: httpx.Response(500, json=body, headers={"Retry-After": "soon"}), seen
    )
    with pytest.raises(ServerError) as caught:
        await client.send_text(PHONE, "hi")
    assert caught.value.retry_after is None


async def test_invalid_message_sends_nothing(seen: list[httpx.Request]) -> None:
    client = make_client(lambda r: httpx.Response(200, json={}), seen)
    with pytest.raises(MessageValidationError):
        await client.send_text(PHONE, "x" * 4097)
    # A model built without validation is still checked before it goes out.
    sneaky = TextMessage.model_construct(to=PHONE, body="", preview_url=False)
    with pytest.raises(MessageValidationError):
        await client.send(sneaky)
    assert seen == []


async def test_request_shape_and_token_kept_out_of_repr(seen: list[httpx.Request]) -> None:
    answer = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": PHONE, "wa_id": "16505551234"}],
        "messages": [{"id": "wamid.NEW", "message_status": "accepted"}],
    }
    client = make_client(lambda r: httpx.Response(200, json=answer), seen)
    result = await client.send_text(PHONE, "hi", reply_to="wamid.Q")
    assert (result.wamid, result.wa_id, result.input, result.message_status) == (
        "wamid.NEW",
        "16505551234",
        PHONE,
        "accepted",
    )
    request = seen[0]
    assert request.url == "https://graph.test/v99.0/123/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content)["context"] == {"message_id": "wamid.Q"}
    assert TOKEN not in repr(client)
