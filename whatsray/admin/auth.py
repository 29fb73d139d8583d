"""Bearer-token auth for the admin API: 401 without a bearer token, 403 for a wrong one.

The token is compared in constant time (`hmac.compare_digest` on bytes), so the answer's timing
says nothing about how much of a guessed token was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

__all__ = ["AuthFailure", "BearerAuth"]

# RFC 6750: a 401 tells the client which scheme to use.
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class AuthFailure:
    status: int  # 401: no bearer credentials; 403: credentials, but the wrong ones
    error: str
    message: str

    @property
    def headers(self) -> dict[str, str]:
        return dict(CHALLENGE) if self.status == 401 else {}


MISSING = AuthFailure(
    401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <admin token>'"
)
WRONG = AuthFailure(403, "forbidden", "the bearer token is not the admin token")


class BearerAuth:
    """Checks an `Authorization` header value against the admin token."""

    def __init__(self, token: str) -> None:
        if not token or token.strip() != token:
            # An empty token would let "Bearer " through; padding would never match a header.
            raise ValueError("the admin token must be non-empty, without surrounding spaces")
        self._token = token.encode()

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"

    def check(self, authorization: str | None) -> AuthFailure | None:
        """None when the header carries the admin token, else why not."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return MISSING
        if not hmac.compare_digest(credentials.encode(), self._token):
            return WRONG
        return None
