"""GraphClient against the emulator over real HTTP: uvicorn on loopback ports, real sockets.

What only a real socket shows: multipart uploads as encoded on the wire, a read timeout on a
held response, a refused connection. The webhook receiver is a second loopback server, so that
inbound messages (needed for mark-as-read) travel the way Meta's would.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import free_port, serve_on_loopback
from whatsray.whatsapp.emulator import (
    DEFAULT_PHONE_NUMBER_ID,
    EmulatorConfig,
    StatusDelays,
    create_emulator_app,
)
from whatsray.whatsapp.errors import (
    AuthError,
    GraphTimeoutError,
    ReEngagementError,
    ServerError,
    TransportError,
)
from whatsray.whatsapp.graph_client import GraphClient

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
USER = "+15551234567"


async def _accept(request: Request) -> Response:
    return Response(status_code=200)


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    receiver = Starlette(routes=[Route("/webhook", _accept, methods=["POST"])])
    with serve_on_loopback(receiver) as receiver_url:
        config = EmulatorConfig(
            access_token=TOKEN,
            webhook_url=f"{receiver_url}/webhook",
            status_delays=StatusDelays(sent=None, delivered=None, read=None),
        )
        with serve_on_loopback(create_emulator_app(config)) as url:
            yield url


@pytest.fixture
async def http(emulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        reset = await client.post(f"{emulator_url}/emulator/reset")
        assert reset.status_code == 200
        yield client


def graph_for(http: httpx.AsyncClient, url: str, token: str = TOKEN) -> GraphClient:
    return GraphClient(http, token, DEFAULT_PHONE_NUMBER_ID, base_url=url)


async def control(http: httpx.AsyncClient, url: str, method: str, path: str, **kw: Any) -> Any:
    response = await http.request(method, f"{url}/emulator/{path}", **kw)
    assert response.status_code < 300, response.text
    return response.json()


async def test_send_inside_the_window_and_template_outside(
    http: httpx.AsyncClient, emulator_url: str
) -> None:
    graph = graph_for(http, emulator_url)
    with pytest.raises(ReEngagementError):
        await graph.send_text(USER, "nobody asked")
    template = await graph.send_template(USER, "hello_world", "en_US")

    await control(http, emulator_url, "POST", "windows", json={"user": USER, "open": True})
    text = await graph.send_text(USER, "now we can talk", callback_data="t-1")

    assert template.wamid != text.wamid
    records = await control(http, emulator_url, "GET", "outbound")
    assert [r["outcome"] for r in records] == ["rejected", "accepted", "accepted"]
    assert records[-1]["body"]["biz_opaque_callback_data"] == "t-1"
    assert records[-1]["wamid"] == text.wamid


async def test_mark_as_read_after_a_real_inbound_webhook(
    http: httpx.AsyncClient, emulator_url: str
) -> None:
    inbound = await control(
        http,
        emulator_url,
        "POST",
        "inbound",
        json={"from": USER, "message": {"type": "text", "text": "hello"}},
    )
    assert inbound["delivery"]["delivered"]
    graph = graph_for(http, emulator_url)
    await graph.mark_as_read(inbound["wamid"], typing_indicator=True)
    reply = await graph.send_text(USER, "hi!", reply_to=inbound["wamid"])
    [read] = await control(http, emulator_url, "GET", "outbound?kind=read")
    assert read["body"]["typing_indicator"] == {"type": "text"}
    [sent] = await control(http, emulator_url, "GET", "outbound")
    assert sent["wamid"] == reply.wamid
    assert sent["body"]["context"] == {"message_id": inbound["wamid"]}


async def test_media_round_trip_over_multipart(http: httpx.AsyncClient, emulator_url: str) -> None:
    graph = graph_for(http, emulator_url)
    data = bytes(range(256)) * 64  # binary, not text: every byte value must survive
    media_id = await graph.upload_media(data, "image/png", "chart.png")
    info = await graph.get_media(media_id)
    assert info.url.startswith(emulator_url)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await graph.download_media(info.url) == data
    await graph.delete_media(media_id)
    downloaded_after_delete = await http.get(info.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert downloaded_after_delete.status_code == 404


async def test_wrong_token_over_http(http: httpx.AsyncClient, emulator_url: str) -> None:
    with pytest.raises(AuthError) as caught:
        await graph_for(http, emulator_url, token="stolen").send_text(USER, "hi")
    assert caught.value.http_status == 401


async def test_injected_server_error_over_http(http: httpx.AsyncClient, emulator_url: str) -> None:
    await control(http, emulator_url, "POST", "faults", json={"next_errors": {"code": 133004}})
    await control(http, emulator_url, "POST", "windows", json={"user": USER, "open": True})
    with pytest.raises(ServerError) as caught:
        await graph_for(http, emulator_url).send_text(USER, "hi")
    assert caught.value.is_transient
    assert caught.value.http_status == 503


async def test_held_answer_becomes_graph_timeout_yet_the_send_happened(
    emulator_url: str,
) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.3)) as impatient:
        await control(impatient, emulator_url, "POST", "reset")
        await control(impatient, emulator_url, "POST", "windows", json={"user": USER, "open": True})
        await control(impatient, emulator_url, "POST", "faults", json={"timeout": {"seconds": 1.0}})
        with pytest.raises(GraphTimeoutError) as caught:
            await graph_for(impatient, emulator_url).send_text(USER, "did this go out?")
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert caught.value.is_transient
        # The emulator applied the send before holding the answer: this is why the client
        # does not retry on its own.
        records = await control(impatient, emulator_url, "GET", "outbound")
        assert [r["outcome"] for r in records] == ["accepted"]


async def test_connection_refused_is_transport_error() -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
    async with httpx.AsyncClient(timeout=5.0) as http:
        with pytest.raises(TransportError) as caught:
            await graph_for(http, closed).send_text(USER, "hi")
    assert type(caught.value) is TransportError
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
