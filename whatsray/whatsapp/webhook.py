"""The webhook layer's decisions, free of any web framework.

`accept_webhook` answers the question every POST asks: given the raw bytes and the signature
header, which HTTP status does Meta get, and which events did the body carry? Meta's rules
(reference sections 1-2): a missing signature is 401, a wrong one 403, a body over 3 MB is refused
(413), and a body that is not JSON is a 400. The webhook receiver of `whatsray local` uses it,
and so will the platform's ingress.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from whatsray.whatsapp.errors import InvalidWebhookPayload
from whatsray.whatsapp.events import Event
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import verify_signature

MAX_WEBHOOK_BODY_BYTES = 3 * 1024 * 1024  # Meta: webhooks/overview, "payloads up to 3 MB"


class WebhookRejected(Exception):
    """The POST must not be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def accept_webhook(app_secret: str, raw_body: bytes, signature_header: str | None) -> list[Event]:
    """Verify the signature on the raw bytes, then parse. Raises `WebhookRejected`."""
    if len(raw_body) > MAX_WEBHOOK_BODY_BYTES:
        raise WebhookRejected(413, f"body over {MAX_WEBHOOK_BODY_BYTES} bytes")
    if not signature_header:
        raise WebhookRejected(401, "missing X-Hub-Signature-256 header")
    if not verify_signature(app_secret, raw_body, signature_header):
        raise WebhookRejected(403, "signature does not match the body")
    try:
        return parse_webhook(raw_body)
    except InvalidWebhookPayload as exc:
        raise WebhookRejected(400, str(exc)) from None


async def read_limited_body(
    chunks: AsyncIterable[bytes], declared_length: str | None, limit: int = MAX_WEBHOOK_BODY_BYTES
) -> bytes:
    """Read a request body, refusing (413) as soon as it is known to be over `limit` bytes.

    Checks the declared Content-Length first, then counts while streaming, so an oversized body is
    never held in memory whole.
    """
    if declared_length is not None:
        try:
            if int(declared_length) > limit:
                raise WebhookRejected(413, f"body over {limit} bytes")
        except ValueError:
            raise WebhookRejected(400, "malformed Content-Length header") from None
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise WebhookRejected(413, f"body over {limit} bytes")
    return bytes(received)
