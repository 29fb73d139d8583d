"""The admin API's paging limits, shared by its routes' query parameters (docs/admin-api.md)."""

from __future__ import annotations

__all__ = ["MAX_OFFSET", "MAX_PAGE"]

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # keeps a silly offset a 422, not a database overflow
