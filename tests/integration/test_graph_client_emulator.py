"""GraphClient against the real emulator: every send type, every error family, limits, the 24 h
window and media, each test run twice: in-process (httpx.ASGITransport) and over real loopback HTTP
(both servers under uvicorn)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_on_loopback
from whatsray.whatsapp.emulator import (
    DEFAULT_PHONE_NUMBER_ID,
    EmulatorConfig,
    FakeClock,
    StatusDelays,
    create_emulator_app,
)
from whatsray.whatsapp.errors import (
    AppRateLimitError,
    AuthError,
    InvalidParameterError,
    MaintenanceError,
    MessageValidationError,
    MetaApiError,
    PairRateLimitError,
    PermissionDeniedError,
    PolicyError,
    ReEngagementError,
    ServerError,
    SpamRateLimitError,
    TemplateError,
    ThroughputLimitError,
    UndeliverableError,
    UnknownMetaError,
)
from whatsray.whatsapp.graph_client import GraphClient, SendResult
from whatsray.whatsapp.messages import (
    ListRow,
    ListSection,
    TemplateComponent,
    TextMessage,
    validate_send_body,
)

TOKEN = "secret-token"
PHONE = "+16505551234"


USER = "+15551234567"
USER_DIGITS = "15551234567"
OTHER_USER = "+15557654321"
BSUID = "US.13491208655302741918"


async def _accept_webhook(request: Request) -> Response:
    return Response(status_code=200)


@dataclass
class Meta:
    """The emulator seen from the client's side, with its control API for setting up scenes."""

    graph: GraphClient
    http: httpx.AsyncClient
    base_url: str

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.base_url}/emulator/{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    async def open_window(self, user: str = USER) -> None:
        await self.control("POST", "windows", json={"user": user, "open": True})

    async def inbound(self, **sender: str) -> str:
        """A user writes to the business; returns the inbound wamid."""
        body = {**(sender or {"from": USER}), "message": {"type": "text", "text": "hi"}}
        answer = await self.control("POST", "inbound", json=body)
        wamid: str = answer["wamid"]
        return wamid

    async def faults(self, **spec: Any) -> None:
        await self.control("POST", "faults", json=spec)

    async def outbound(self, kind: str = "message") -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self.control("GET", f"outbound?kind={kind}")
        return records


TRANSPORTS = ["asgi", "loopback"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def running_emulator(
    transport: str, token: str = TOKEN, **overrides: Any
) -> AsyncIterator[Meta]:
    """The emulator on a fake clock; its webhooks go to a receiver that accepts everything."""
    receiver = Starlette(routes=[Route("/webhook", _accept_webhook, methods=["POST"])])
    settings = {
        "access_token": token,
        "status_delays": StatusDelays(sent=None, delivered=None, read=None),
        **overrides,
    }
    if transport == "loopback":
        with serve_on_loopback(receiver) as receiver_url:
            config = EmulatorConfig(webhook_url=receiver_url + "/webhook", **settings)
            with serve_on_loopback(create_emulator_app(config, clock=FakeClock())) as url:
                async with httpx.AsyncClient(timeout=10) as http:
                    graph = GraphClient(http, TOKEN, DEFAULT_PHONE_NUMBER_ID, base_url=url)
                    yield Meta(graph, http, url)
        return
    config = EmulatorConfig(webhook_url="http://receiver/webhook", **settings)
    hooks = httpx.AsyncClient(transport=httpx.ASGITransport(receiver), base_url="http://receiver")
    app = create_emulator_app(config, clock=FakeClock(), http=hooks)
    async with (
        hooks,
        app.state.emulator,
        httpx.AsyncClient(transport=httpx.ASGITransport(app)) as http,
    ):
        graph = GraphClient(http, TOKEN, DEFAULT_PHONE_NUMBER_ID, base_url="http://emulator")
        yield Meta(graph, http, "http://emulator")


@pytest.fixture
async def meta(transport: str) -> AsyncIterator[Meta]:
    async with running_emulator(transport) as running:
        await running.open_window()
        yield running


def every_send(graph: GraphClient, media_id: str) -> list[Awaitable[SendResult]]:
    return [
        graph.send_text(USER, "hello", preview_url=True, callback_data="cb-1"),
        graph.send_media(USER, "image", media_id=media_id, caption="look"),
        graph.send_media(USER, "document", link="https://example.com/a.pdf", filename="a.pdf"),
        graph.send_media(USER, "audio", media_id=media_id),
        graph.send_media(USER, "video", link="https://example.com/v.mp4"),
        graph.send_media(USER, "sticker", media_id=media_id),
        graph.send_template(USER, "hello_world", "en_US", [TemplateComponent.body("Ada")]),
        graph.send_buttons(USER, "Book it?", [("yes", "Yes"), ("no", "No")], footer="f"),
        graph.send_list(
            USER,
            "Pick a slot",
            "Slots",
            [ListSection(rows=(ListRow(id="mon-9", title="Mon 9:00"),))],
            header="Slots",
        ),
        graph.send_reaction(USER, "wamid.SOMETHING", "👍"),
        graph.remove_reaction(USER, "wamid.SOMETHING"),
    ]


async def test_every_send_type_gets_a_fresh_wamid_and_the_exact_body_is_recorded(
    meta: Meta,
) -> None:
    media_id = await meta.graph.upload_media(b"\x89PNG fake", "image/png", "a.png")
    results = [await send for send in every_send(meta.graph, media_id)]
    wamids = [r.wamid for r in results]
    assert all(w.startswith("wamid.") for w in wamids)
    assert len(set(wamids)) == len(wamids)
    assert {r.wa_id for r in results} == {USER_DIGITS}
    assert {r.input for r in results} == {USER}

    records = await meta.outbound()
    assert [r["wamid"] for r in records] == wamids
    assert [r["outcome"] for r in records] == ["accepted"] * len(wamids)
    # What arrived is exactly what the model says it sends, and parses back to the same model.
    assert (
        records[0]["body"]
        == TextMessage(
            to=USER, body="hello", preview_url=True, callback_data="cb-1"
        ).to_graph_body()
    )
    assert records[-1]["body"]["reaction"] == {"message_id": "wamid.SOMETHING", "emoji": ""}
    for record in records:
        assert validate_send_body(record["body"]).to_graph_body() == record["body"]


async def test_quoted_reply_reaches_the_emulator(meta: Meta) -> None:
    inbound = await meta.inbound()
    await meta.graph.send_text(USER, "answering that", reply_to=inbound)
    [record] = await meta.outbound()
    assert record["body"]["context"] == {"message_id": inbound}


async def test_template_reports_pacing_status(meta: Meta) -> None:
    result = await meta.graph.send_template(USER, "hello_world", "en_US")
    assert result.message_status == "accepted"
    text = await meta.graph.send_text(USER, "plain")
    assert text.message_status is None


async def test_bsuid_recipient(meta: Meta) -> None:
    await meta.inbound(user_id=BSUID)
    result = await meta.graph.send_text(BSUID, "hi username user")
    assert result.user_id == BSUID
    assert result.wa_id is None
    [record] = await meta.outbound()
    assert record["body"]["recipient"] == BSUID
    assert "to" not in record["body"]


async def test_invalid_message_never_reaches_the_emulator(meta: Meta) -> None:
    with pytest.raises(MessageValidationError):
        await meta.graph.send_buttons(USER, "too many", [(str(i), str(i)) for i in range(4)])
    assert await meta.control("GET", "requests") == []


async def test_wrong_token_is_auth_error(transport: str) -> None:
    async with running_emulator(transport, token="the-real-token") as meta:
        with pytest.raises(AuthError) as caught:
            await meta.graph.send_text(USER, "hi")
    assert caught.value.code == 190
    assert caught.value.http_status == 401
    assert not caught.value.is_transient


async def test_unknown_phone_number_id_is_invalid_parameter(meta: Meta) -> None:
    stranger = GraphClient(meta.http, TOKEN, "999", base_url=meta.base_url)
    with pytest.raises(InvalidParameterError) as caught:
        await stranger.send_text(USER, "hi")
    assert caught.value.code == 100
    assert "999" in (caught.value.details or "")


async def test_throughput_limit(transport: str) -> None:
    async with running_emulator(transport, throughput_mps=2) as meta:
        await meta.open_window(USER)
        await meta.open_window(OTHER_USER)
        await meta.graph.send_text(USER, "1")
        await meta.graph.send_text(OTHER_USER, "2")
        with pytest.raises(ThroughputLimitError) as caught:
            await meta.graph.send_text(USER, "3")
    assert caught.value.code == 130429
    assert caught.value.is_transient
    assert caught.value.retry_after == 1.0


async def test_pair_rate_limit_only_for_that_user(transport: str) -> None:
    async with running_emulator(transport, pair_burst=2) as meta:
        await meta.open_window(USER)
        await meta.open_window(OTHER_USER)
        await meta.graph.send_text(USER, "1")
        await meta.graph.send_text(USER, "2")
        with pytest.raises(PairRateLimitError) as caught:
            await meta.graph.send_text(USER, "3")
        assert (await meta.graph.send_text(OTHER_USER, "fine")).wamid
    assert caught.value.code == 131056
    assert caught.value.is_transient


async def test_outside_the_window_only_templates_go_through(transport: str) -> None:
    async with running_emulator(transport) as meta:  # the user never wrote: no window
        with pytest.raises(ReEngagementError) as caught:
            await meta.graph.send_text(USER, "hello?")
        result = await meta.graph.send_template(USER, "hello_world", "en_US")
    assert caught.value.code == 131047
    assert not caught.value.is_transient
    assert result.wamid.startswith("wamid.")


async def test_injected_server_error_is_transient(meta: Meta) -> None:
    await meta.faults(next_errors={"code": 131000})
    with pytest.raises(ServerError) as caught:
        await meta.graph.send_text(USER, "hi")
    assert caught.value.code == 131000
    assert caught.value.http_status == 500
    assert caught.value.is_transient
    assert caught.value.fbtrace_id
    assert (await meta.graph.send_text(USER, "again")).wamid  # the fault was used up


async def test_random_5xx_on_any_call(meta: Meta) -> None:
    await meta.faults(error_rate=1.0, error_rate_code=2)
    with pytest.raises(ServerError) as caught:
        await meta.graph.get_media("123")
    assert caught.value.http_status == 503
    assert caught.value.is_transient


async def test_unknown_code_with_5xx_is_transient(meta: Meta) -> None:
    await meta.faults(next_errors={"code": 987654, "http_status": 502})
    with pytest.raises(UnknownMetaError) as caught:
        await meta.graph.send_text(USER, "hi")
    assert caught.value.code == 987654
    assert caught.value.is_transient


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (131026, UndeliverableError),
        (131048, SpamRateLimitError),
        (132001, TemplateError),
        (368, PolicyError),
        (131057, MaintenanceError),
        (80007, AppRateLimitError),
        (10, PermissionDeniedError),
    ],
)
async def test_injected_meta_code_maps_to_its_class(
    meta: Meta, code: int, cls: type[MetaApiError]
) -> None:
    await meta.faults(next_errors={"code": code, "details": "injected"})
    with pytest.raises(cls) as caught:
        await meta.graph.send_text(USER, "hi")
    assert caught.value.code == code
    assert caught.value.details == "injected"
    assert caught.value.message.startswith(f"(#{code})")


async def test_mark_as_read_with_typing_indicator(meta: Meta) -> None:
    inbound = await meta.inbound()
    assert await meta.graph.mark_as_read(inbound, typing_indicator=True) is None
    assert await meta.graph.mark_as_read(inbound) is None
    first, second = await meta.outbound(kind="read")
    assert first["body"] == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": inbound,
        "typing_indicator": {"type": "text"},
    }
    assert "typing_indicator" not in second["body"]
    assert first["outcome"] == second["outcome"] == "accepted"


async def test_mark_as_read_of_unknown_message_is_invalid(meta: Meta) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        await meta.graph.mark_as_read("wamid.NOT_RECEIVED")
    assert caught.value.code == 131009


async def test_media_round_trip(meta: Meta) -> None:
    data = b"%PDF-1.4 a small document"
    media_id = await meta.graph.upload_media(data, "application/pdf", "report.pdf")
    [upload] = [r for r in await meta.control("GET", "requests") if r["path"].endswith("/media")]
    assert upload["body"]["messaging_product"] == "whatsapp"
    assert upload["body"]["type"] == "application/pdf"
    assert upload["body"]["file"]["filename"] == "report.pdf"

    info = await meta.graph.get_media(media_id)
    lookup = (await meta.control("GET", "requests"))[-1]
    assert lookup["query"] == f"phone_number_id={DEFAULT_PHONE_NUMBER_ID}"
    assert info.id == media_id
    assert info.mime_type == "application/pdf"
    assert info.file_size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await meta.graph.download_media(info.url) == data

    assert await meta.graph.delete_media(media_id) is None
    with pytest.raises(InvalidParameterError):
        await meta.graph.get_media(media_id)
    with pytest.raises(InvalidParameterError):
        await meta.graph.delete_media(media_id)


async def test_download_needs_the_token(meta: Meta) -> None:
    media_id = await meta.graph.upload_media(b"\x89PNG", "image/png", "a.png")
    info = await meta.graph.get_media(media_id)
    intruder = GraphClient(meta.http, "wrong", DEFAULT_PHONE_NUMBER_ID, base_url=meta.base_url)
    with pytest.raises(AuthError):
        await intruder.download_media(info.url)


async def test_upload_of_unsupported_type_is_rejected(meta: Meta) -> None:
    with pytest.raises(MetaApiError) as caught:
        await meta.graph.upload_media(b"MZ", "application/x-msdownload", "a.exe")
    assert caught.value.code == 131053
