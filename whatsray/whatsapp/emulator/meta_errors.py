"""Meta-shaped error bodies: the Graph API response form and the `statuses[].errors` form.

Titles and details follow Meta's error-code page (reference section 6). HTTP statuses follow what
Meta answers: 401 for auth, 500/503 for server-side codes, 400 for everything else.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

ERROR_DOCS_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True)
class MetaErrorSpec:
    title: str
    details: str
    http_status: int = 400


_SPECS: dict[int, MetaErrorSpec] = {
    0: MetaErrorSpec("AuthException", "We were unable to authenticate the app user.", 401),
    1: MetaErrorSpec("An unknown error occurred", "Invalid request or possible server error.", 500),
    2: MetaErrorSpec("Service temporarily unavailable", "Temporary downtime or overload.", 503),
    4: MetaErrorSpec("Application request limit reached", "Too many API calls by the app.", 400),
    100: MetaErrorSpec("Invalid parameter", "Invalid parameter.", 400),
    190: MetaErrorSpec(
        "Invalid OAuth access token - Cannot parse access token",
        "The access token is missing, invalid or expired.",
        401,
    ),
    368: MetaErrorSpec("Temporarily blocked for policies violations", "Policy violation.", 400),
    2500: MetaErrorSpec("Unknown path components", "The path or API version is not valid.", 400),
    80007: MetaErrorSpec("Rate limit issues", "The WhatsApp Business Account rate limit.", 400),
    130429: MetaErrorSpec("Rate limit hit", "Cloud API message throughput has been reached."),
    130472: MetaErrorSpec(
        "User's number is part of an experiment", "Failed to send message because of an experiment."
    ),
    131000: MetaErrorSpec("Something went wrong", "Something went wrong.", 500),
    131008: MetaErrorSpec("Required parameter is missing", "A required parameter is missing."),
    131009: MetaErrorSpec("Parameter value is not valid", "Message ID is not valid."),
    131016: MetaErrorSpec("Service unavailable", "A service is temporarily unavailable.", 503),
    131021: MetaErrorSpec(
        "Recipient cannot be sender", "Sender and recipient phone number is the same."
    ),
    131026: MetaErrorSpec(
        "Message undeliverable", "Message failed to send because it could not be delivered."
    ),
    131031: MetaErrorSpec("Account has been locked", "The business account was locked."),
    131042: MetaErrorSpec("Business eligibility payment issue", "A payment method problem."),
    131047: MetaErrorSpec(
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    131048: MetaErrorSpec("Spam rate limit hit", "Too many messages were blocked or flagged."),
    131049: MetaErrorSpec(
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "Per-user marketing message limit.",
    ),
    131050: MetaErrorSpec(
        "User has stopped marketing messages", "The user stopped marketing messages."
    ),
    131051: MetaErrorSpec("Unsupported message type", "Message type is not currently supported."),
    131052: MetaErrorSpec("Media download error", "Unable to download the media."),
    131053: MetaErrorSpec("Media upload error", "Unable to upload the media."),
    131056: MetaErrorSpec(
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
    ),
    131057: MetaErrorSpec("Account in maintenance mode", "The business account is in maintenance."),
    132000: MetaErrorSpec(
        "Number of parameters does not match the expected number of params",
        "The number of parameters does not match the template.",
    ),
    132001: MetaErrorSpec(
        "Template name does not exist in the translation",
        "The template does not exist or is not approved.",
    ),
    133004: MetaErrorSpec("Server temporarily unavailable", "The server is unavailable.", 503),
    135000: MetaErrorSpec("Generic user error", "Message failed to send because of an error."),
}

_TRACE_ALPHABET = string.ascii_letters + string.digits + "_-"


def spec_for(code: int) -> MetaErrorSpec:
    return _SPECS.get(code, MetaErrorSpec("Unknown error", f"Error {code}."))


def http_status_for(code: int) -> int:
    return spec_for(code).http_status


def new_fbtrace_id() -> str:
    return "A" + "".join(secrets.choice(_TRACE_ALPHABET) for _ in range(22))


def graph_error_body(
    code: int, details: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """The body of a Graph API error response, exactly Meta's shape."""
    spec = spec_for(code)
    if message is None:
        # 190 carries the bare OAuth text; every WhatsApp code is prefixed with "(#code)".
        message = spec.title if code == 190 else f"(#{code}) {spec.title}"
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or spec.details},
            "fbtrace_id": new_fbtrace_id(),
        }
    }


def status_error(code: int, details: str | None = None) -> dict[str, Any]:
    """One entry of `statuses[].errors` on a `failed` status webhook."""
    spec = spec_for(code)
    return {
        "code": code,
        "title": spec.title,
        "message": spec.title,
        "error_data": {"details": details or spec.details},
        "href": ERROR_DOCS_URL,
    }


@dataclass(frozen=True)
class GraphResult:
    """What a Graph API handler answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def error_code(self) -> int | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


def graph_error(
    code: int, details: str | None = None, *, http_status: int | None = None
) -> GraphResult:
    return GraphResult(http_status or http_status_for(code), graph_error_body(code, details))
