"""Webhook signatures (`X-Hub-Signature-256`) and the GET verification handshake.

Meta signs the raw request body with HMAC-SHA256 keyed by the App Secret. The digest must be
computed on the bytes exactly as received: re-serialised JSON (unescaped unicode, `/` instead of
`\\/`) has different bytes and fails, which is the most common webhook bug in the field.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(app_secret: str, raw_body: bytes) -> str:
    """Return the `X-Hub-Signature-256` header value for `raw_body`."""
    digest = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """True when `header` is Meta's signature of `raw_body`; constant-time compare."""
    if not header or not header.startswith(_PREFIX):
        return False
    expected = sign(app_secret, raw_body)
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The GET verification handshake: the challenge to echo as plain text, or None (answer 403).

    Meta sends `hub.mode=subscribe`, `hub.verify_token` and `hub.challenge` as query parameters.
    """
    if params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token")
    if token is None or not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return params.get("hub.challenge")
