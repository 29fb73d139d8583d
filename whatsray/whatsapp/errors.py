"""Typed WhatsApp errors: one hierarchy, and the one table that maps Meta codes to classes.

Branch on the Meta `code` (Meta: support/error-codes), never on the HTTP status or the title.
Every error survives `pickle` (Ray pickles exceptions across processes), so all state lives in
keyword arguments with defaults and `__reduce__` rebuilds from them.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class WhatsAppError(Exception):
    """Base of every error this package raises about WhatsApp."""

    is_transient: ClassVar[bool] = False
    default_retry_after: ClassVar[float | None] = None

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        raw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after
        self.raw = raw

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "code": self.code,
            "details": self.details,
            "fbtrace_id": self.fbtrace_id,
            "http_status": self.http_status,
            "retry_after": self.retry_after,
            "raw": self.raw,
        }
        return (_rebuild, (type(self), self.message, kwargs))

    def __str__(self) -> str:
        parts = [self.message or type(self).__name__]
        if self.code is not None:
            parts.insert(0, f"[{self.code}]")
        if self.details:
            parts.append(f"({self.details})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


def _rebuild(cls: type[WhatsAppError], message: str, kwargs: dict[str, Any]) -> WhatsAppError:
    return cls(message, **kwargs)


# --- Errors raised before anything reaches Meta ------------------------------------------------


class InvalidWebhookPayload(WhatsAppError, ValueError):
    """The webhook body is not JSON (the only error `parse_webhook` raises)."""


class MessageValidationError(WhatsAppError, ValueError):
    """An outbound message breaks one of Meta's limits; it was not sent."""


class TransportError(WhatsAppError):
    """The Graph API could not be reached (connection refused, reset, DNS...)."""

    is_transient = True


class GraphTimeoutError(TransportError):
    """The Graph API did not answer in time. The request may or may not have been applied."""


# --- Errors Meta returned -----------------------------------------------------------------------


class MetaApiError(WhatsAppError):
    """An error body returned by the Graph API, or carried by a `failed` status webhook."""


class UnknownMetaError(MetaApiError):
    """A code missing from the table. Transient when Meta or the HTTP status says so."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        raw = kwargs.get("raw") or {}
        status = kwargs.get("http_status")
        self._transient = bool(raw.get("is_transient")) or (status is not None and status >= 500)

    @property
    def is_transient(self) -> bool:  # type: ignore[override]  # decided per instance
        return self._transient


class AuthError(MetaApiError):
    """0 / 190: the access token is invalid or expired."""


class PermissionDeniedError(MetaApiError):
    """3, 10, 200-299: the app or token lacks a permission."""


class InvalidParameterError(MetaApiError):
    """100, 131008, 131009, 135000: a bad, missing or invalid parameter."""


class RateLimitError(MetaApiError):
    """A rate limit that clears with time; retry with backoff."""

    is_transient = True


class ThroughputLimitError(RateLimitError):
    """130429: the number's messages-per-second throughput was exceeded."""

    default_retry_after = 1.0


class PairRateLimitError(RateLimitError):
    """131056: too many messages to the same user (about 1 per 6 s, with bursts)."""

    default_retry_after = 6.0


class AppRateLimitError(RateLimitError):
    """4, 80007: the app's or the WABA's API call rate limit."""

    default_retry_after = 60.0


class SpamRateLimitError(MetaApiError):
    """131048: too many blocks or spam flags. Stop and check quality; retrying makes it worse."""


class ReEngagementError(MetaApiError):
    """131047: more than 24 h since the user last wrote; only a template can be sent."""


class UndeliverableError(MetaApiError):
    """131026: not a WhatsApp user, terms not accepted, or an old client. Do not retry blindly."""


class MarketingLimitError(MetaApiError):
    """131049 / 131050: a per-user marketing limit, or the user opted out of marketing."""


class PolicyError(MetaApiError):
    """368, 131031, 130497, 131064: a policy restriction; the account may be locked."""


class TemplateError(MetaApiError):
    """132xxx: the template is missing, unapproved, paused, or its parameters do not match."""


class ServerError(MetaApiError):
    """1, 2, 131000, 131016, 133004: temporary or server-side failure; retry with backoff."""

    is_transient = True


class MaintenanceError(ServerError):
    """131057: the account is in maintenance (for example a throughput upgrade, up to 1 min)."""

    default_retry_after = 60.0


# The one table. Ranges follow the exact codes.
_CODE_TABLE: dict[int, type[MetaApiError]] = {
    0: AuthError,
    190: AuthError,
    3: PermissionDeniedError,
    10: PermissionDeniedError,
    100: InvalidParameterError,
    131008: InvalidParameterError,
    131009: InvalidParameterError,
    135000: InvalidParameterError,
    130429: ThroughputLimitError,
    131056: PairRateLimitError,
    4: AppRateLimitError,
    80007: AppRateLimitError,
    131048: SpamRateLimitError,
    131047: ReEngagementError,
    131026: UndeliverableError,
    131049: MarketingLimitError,
    131050: MarketingLimitError,
    368: PolicyError,
    131031: PolicyError,
    130497: PolicyError,
    131064: PolicyError,
    1: ServerError,
    2: ServerError,
    131000: ServerError,
    131016: ServerError,
    133004: ServerError,
    131057: MaintenanceError,
}
_CODE_RANGES: tuple[tuple[range, type[MetaApiError]], ...] = (
    (range(200, 300), PermissionDeniedError),
    (range(132000, 133000), TemplateError),
)

ALL_ERROR_CLASSES: tuple[type[WhatsAppError], ...] = (
    WhatsAppError,
    InvalidWebhookPayload,
    MessageValidationError,
    TransportError,
    GraphTimeoutError,
    MetaApiError,
    UnknownMetaError,
    *sorted(set(_CODE_TABLE.values()) | {cls for _, cls in _CODE_RANGES}, key=lambda c: c.__name__),
    RateLimitError,
)


def error_class_for_code(code: int | None) -> type[MetaApiError]:
    """The class for a Meta error code; `UnknownMetaError` when the code is not in the table."""
    if code is None:
        return UnknownMetaError
    if code in _CODE_TABLE:
        return _CODE_TABLE[code]
    for codes, cls in _CODE_RANGES:
        if code in codes:
            return cls
    return UnknownMetaError


def error_from_meta(error: dict[str, Any], *, http_status: int | None = None) -> MetaApiError:
    """Build the typed error from Meta's `error` object (API response or status webhook)."""
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    message = error.get("message") or error.get("title") or ""
    cls = error_class_for_code(code)
    return cls(
        str(message),
        code=code,
        details=str(details) if details is not None else None,
        fbtrace_id=error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None,
        http_status=http_status,
        raw=error,
    )


def error_from_response(http_status: int, body: bytes) -> MetaApiError:
    """Build the typed error from a non-2xx Graph API response, however malformed its body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        snippet = body[:200].decode("utf-8", "replace")
        return UnknownMetaError(
            f"HTTP {http_status} with no Meta error body", details=snippet, http_status=http_status
        )
    return error_from_meta(error, http_status=http_status)
