"""A standalone webhook endpoint: Meta's handshake, signed POSTs, parsed events to a callback.

It is what `whatsray local` runs in front of the emulator until the Ray pipeline takes the webhook
over, and a handy tool on its own: point Meta (or the emulator) at it to see exactly what arrives.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from whatsray import metrics
from whatsray.metrics.prometheus import exposition
from whatsray.whatsapp.events import Event
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_handshake
from whatsray.whatsapp.webhook import WebhookRejected, accept_webhook, read_limited_body

log = logging.getLogger(__name__)

# Called with the events of each accepted POST before the 200 goes out. It may be async, and may
# raise `WebhookRejected` (e.g. 503 when the events could not be stored, so Meta retries). It may
# return "duplicate" when every event was stored before (a redelivery): the metrics tell them apart.
EventSink = Callable[[list[Event]], Awaitable[str | None] | str | None]

# The `result` label of `whatsray_webhook_requests_total` for each refusal's status.
_REFUSALS = {401: "bad_signature", 403: "bad_signature", 413: "too_large", 503: "unavailable"}


def create_webhook_receiver(
    *, app_secret: str, verify_token: str, on_events: EventSink, path: str = "/webhook"
) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_page(request: Request) -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    routes = webhook_routes(
        app_secret=app_secret, verify_token=verify_token, on_events=on_events, path=path
    )
    return Starlette(
        routes=[
            *routes,
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),  # docs/metrics.md
        ]
    )


def webhook_routes(
    *, app_secret: str, verify_token: str, on_events: EventSink, path: str = "/webhook"
) -> list[Route]:
    """`GET path` (Meta's handshake) and `POST path` (signed updates), for any Starlette app."""

    async def handshake(request: Request) -> Response:
        challenge = verify_handshake(request.query_params, verify_token)
        if challenge is None:
            # Never the token given: it may be a near miss of the real one.
            log.warning("webhook handshake refused: wrong mode or verify token")
            return PlainTextResponse("Forbidden", status_code=403)
        # Plain text: a JSON-encoded challenge ("123" with quotes) fails Meta's verification.
        return PlainTextResponse(challenge)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_limited_body(request.stream(), request.headers.get("content-length"))
            events = accept_webhook(app_secret, body, request.headers.get(SIGNATURE_HEADER))
            stored = on_events(events)
            if inspect.isawaitable(stored):
                stored = await stored
            result = "duplicate" if stored == "duplicate" else "accepted"
            response: Response = PlainTextResponse("OK")
        except WebhookRejected as rejected:
            log.warning("webhook rejected: %s", rejected)
            result = _REFUSALS.get(rejected.status, "malformed")
            response = JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        metrics.webhook_requests.inc(result=result)
        metrics.webhook_seconds.observe(time.perf_counter() - started)
        return response

    return [Route(path, handshake, methods=["GET"]), Route(path, receive, methods=["POST"])]
