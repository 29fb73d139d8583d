"""The MCP server's REST client and its error mapping, against `httpx.MockTransport`."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from whatsray.mcp import ApiError, ApiUnreachable, WhatsrayApi, check_api_url, tool_error

TOKEN = "t0ken"
Handler = Callable[[httpx.Request], httpx.Response]


def api_answering(handler: Handler, seen: list[httpx.Request] | None = None) -> WhatsrayApi:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    return WhatsrayApi("http://whatsray:8000/", TOKEN, transport=httpx.MockTransport(record))


def error_body(status: int, error: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "message": message})


async def test_requests_carry_the_token_and_escape_path_segments() -> None:
    seen: list[httpx.Request] = []
    async with api_answering(lambda r: httpx.Response(200, json={"ok": True}), seen) as api:
        await api.get_messages("106540352242922:US.13/49", limit=5, before=7)
        await api.send_message("+1 555", "hi", idempotency_key="k1")
        await api.send_message("+1 555", "hi")
        await api.search_contacts("ana lima", 3)
        await api.list_chats(10, 20)
        await api.update_job("job/1", {"name": "x"})
        await api.stop_job("a b")
    assert {r.headers["Authorization"] for r in seen} == {f"Bearer {TOKEN}"}
    assert [(r.method, r.url.raw_path.decode()) for r in seen] == [
        ("GET", "/api/messages/106540352242922%3AUS.13%2F49?limit=5&before=7"),
        ("POST", "/api/send-message"),
        ("POST", "/api/send-message"),
        ("GET", "/api/contacts/search?q=ana+lima&limit=3"),
        ("GET", "/api/chats?limit=10&offset=20"),
        ("PATCH", "/api/jobs/job%2F1"),
        ("POST", "/api/jobs/a%20b/stop"),
    ]
    assert json.loads(seen[1].content) == {"to": "+1 555", "text": "hi", "idempotency_key": "k1"}
    assert json.loads(seen[2].content) == {"to": "+1 555", "text": "hi"}  # no null key
    assert json.loads(seen[5].content) == {"name": "x"}


@pytest.mark.parametrize("bad", ["", " ", ".", ".."])
async def test_a_segment_that_would_change_the_route_is_refused_before_sending(bad: str) -> None:
    seen: list[httpx.Request] = []
    async with api_answering(lambda r: httpx.Response(200, json={}), seen) as api:
        with pytest.raises(ValueError, match="job_id must not be"):
            await api.delete_job(bad)
        with pytest.raises(ValueError, match="chat must not be"):
            await api.get_messages(bad)
    assert seen == []


async def test_an_error_body_becomes_an_api_error() -> None:
    answer = error_body(409, "outside_window", "15551230000 last wrote 30.0 h ago: ...")
    async with api_answering(lambda r: answer) as api:
        with pytest.raises(ApiError) as caught:
            await api.send_message("15551230000", "hi")
    error = caught.value
    assert (error.status, error.error, error.method, error.path) == (
        409,
        "outside_window",
        "POST",
        "/api/send-message",
    )
    assert error.message.startswith("15551230000 last wrote")


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (httpx.Response(404, json={"detail": "Not Found"}), "not_found", "Not Found"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "http_502", "<html>bad gateway"),
        (httpx.Response(500), "http_500", "Internal Server Error"),
        (httpx.Response(400, json=[1, 2]), "http_400", "[1,2]"),
    ],
)
async def test_an_error_without_an_error_body_is_still_described(
    answer: httpx.Response, error: str, message: str
) -> None:
    async with api_answering(lambda r: answer) as api:
        with pytest.raises(ApiError) as caught:
            await api.list_chats()
    assert caught.value.error == error
    assert message in caught.value.message


async def test_answers_without_an_object_are_wrapped() -> None:
    answers = iter(
        [httpx.Response(204), httpx.Response(200, json=[{"id": "j"}]), httpx.Response(200)]
    )
    async with api_answering(lambda r: next(answers)) as api:
        assert await api.delete_job("j") == {}
        assert await api.list_jobs({}) == {"result": [{"id": "j"}]}
        assert await api.start_job("j") == {}


async def test_a_success_that_is_not_json_is_an_error() -> None:
    async with api_answering(lambda r: httpx.Response(200, text="hello")) as api:
        with pytest.raises(ApiError, match="not JSON"):
            await api.get_job("j")


async def test_no_answer_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with api_answering(refuse) as api:
        with pytest.raises(ApiUnreachable, match=r"cannot reach whatsray at http://whatsray:8000"):
            await api.list_chats()
    async with api_answering(stall) as api:
        with pytest.raises(ApiUnreachable, match="did not answer GET /api/chats in time"):
            await api.list_chats()


def test_the_token_never_shows() -> None:
    api = WhatsrayApi("http://whatsray", TOKEN)
    assert TOKEN not in repr(api) and "***" in repr(api)
    for bad in ("", " padded"):
        with pytest.raises(ValueError, match="admin token"):
            WhatsrayApi("http://whatsray", bad)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://127.0.0.1:8000/", "http://127.0.0.1:8000"), (" https://bot.example ", None)],
)
def test_api_urls(url: str, expected: str | None) -> None:
    assert check_api_url(url) == (expected or url.strip())


@pytest.mark.parametrize("bad", ["127.0.0.1:8000", "ftp://host", "http://", "http://h/?x=1"])
def test_bad_api_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="API URL"):
        check_api_url(bad)


def refusal(status: int, error: str, retry_after: str | None = None) -> str:
    exc = ApiError(status, error, "the API's sentence", method="POST", path="/api/x")
    exc.retry_after = retry_after
    return str(tool_error(exc))


def test_tool_errors_quote_the_api_and_say_what_to_do() -> None:
    window = refusal(409, "outside_window")
    assert window.startswith("whatsray answered HTTP 409 outside_window to POST /api/x")
    assert "the API's sentence" in window and "Do not retry" in window
    assert "new idempotency_key" in refusal(409, "idempotency_conflict")
    assert "WHATSRAY_ADMIN_TOKEN" in refusal(401, "unauthorized")
    assert "WHATSRAY_ADMIN_TOKEN" in refusal(403, "forbidden")
    assert "list or search first" in refusal(404, "not_found")
    assert "Fix the argument" in refusal(422, "invalid_request")
    assert "wait 7 s" in refusal(429, "rate_limited", retry_after="7")
    assert "wait a while" in refusal(429, "rate_limited")
    assert "try again later" in refusal(503, "http_503")
    assert refusal(418, "teapot").endswith("the API's sentence")  # no made-up hint
    unreachable = str(tool_error(ApiUnreachable("cannot reach whatsray at http://x.")))
    assert unreachable.startswith("cannot reach") and "Nothing was done" in unreachable
    assert "Nothing was sent" in str(tool_error(ValueError("job_id must not be empty")))


async def test_the_business_number_is_sent_only_when_given() -> None:
    seen: list[httpx.Request] = []
    async with api_answering(lambda r: httpx.Response(200, json={}), seen) as api:
        await api.send_message("15551230000", "hi")
        await api.send_message("15551230000", "hi", phone_number_id="1111")
        await api.list_chats(phone_number_id="1111")
        await api.search_contacts("ana", phone_number_id="1111")
    assert [json.loads(r.content) for r in seen[:2]] == [
        {"to": "15551230000", "text": "hi"},
        {"to": "15551230000", "text": "hi", "phone_number_id": "1111"},
    ]
    assert [r.url.params.get("phone_number_id") for r in seen[2:]] == ["1111", "1111"]


async def test_an_unknown_number_keeps_its_field_type_and_gets_the_number_hint() -> None:
    message = "body field 'phone_number_id': unknown business number '999'; this app sends from 1"
    detail = [{"loc": ["body", "phone_number_id"], "msg": "...", "type": "unknown_phone_number_id"}]
    answer = httpx.Response(
        422, json={"error": "invalid_request", "message": message, "detail": detail}
    )
    async with api_answering(lambda r: answer) as api:
        with pytest.raises(ApiError) as caught:
            await api.send_message("15551230000", "hi", phone_number_id="999")
    assert (caught.value.error, caught.value.reason) == (
        "invalid_request",
        "unknown_phone_number_id",
    )
    text = str(tool_error(caught.value))
    assert "unknown business number '999'" in text
    assert "does not send from that business number" in text and "Fix the argument" not in text
