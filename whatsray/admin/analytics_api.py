"""Conversation analytics in the admin API (docs/analytics.md): the summary of a time range, the
same per UTC day, the tables as Parquet, and the owner's page.

`add_analytics_routes(router, ...)` adds to the admin router (`whatsray.admin.api`):

- `GET /api/analytics/summary`, `GET /api/analytics/daily`, `GET /api/analytics/export/{table}`,
  guarded as every admin route, except that a GET without an Authorization header may carry the
  page's login cookie instead;
- `GET /analytics` (the page, or a login form with 401) and `POST /analytics/login` (checks the
  token, sets the cookie, redirects to the page). Not in the OpenAPI document: they answer HTML.

The cookie holds an HMAC of the admin token (never the token), HttpOnly, SameSite=Strict,
Path=/, and opens nothing but these GET routes: no route that changes anything reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from whatsray.admin.analytics_models import DailyOut, SummaryOut
from whatsray.admin.auth import BearerAuth
from whatsray.admin.guard import AdminProblem, guarded_route_class
from whatsray.admin.numbers import NumberFilter, served_number
from whatsray.admin.ports import AdminStorePort

__all__ = ["COOKIE", "add_analytics_routes", "parse_time"]

COOKIE = "whatsray_analytics"
DAY_S = 86400.0
DEFAULT_DAYS = 30
MAX_SUMMARY_DAYS = 3660  # ten years
MAX_DAILY_DAYS = 400  # a chart's worth of days
LATEST = 4102444800.0  # 2100-01-01: later is a typo
MAX_LOGIN_BODY = 4096
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

ExportTable = Literal[
    "contacts", "chats", "messages", "turns", "tool_calls", "outbound", "dead_letters", "daily"
]
TimeParam = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=40,
        description="Unix seconds, or an ISO date (`2026-12-01`: its 00:00 UTC) or date-time"
        " (UTC unless it gives an offset).",
    ),
]


def parse_time(value: str, name: str) -> float:
    """Unix seconds or an ISO date/date-time; a 422 naming `name` otherwise."""
    text = value.strip()
    try:
        if _NUMBER.match(text):
            seconds = float(text)
        elif len(text) == 10:
            day = date.fromisoformat(text)
            seconds = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
    except ValueError:
        raise AdminProblem.invalid(
            ("query", name),
            f"{value[:40]!r} is not a time: give unix seconds or an ISO date (2026-12-01)"
            " or date-time (2026-12-01T09:30:00Z)",
            "invalid_time",
        ) from None
    if not math.isfinite(seconds) or not 0 <= seconds <= LATEST:
        raise AdminProblem.invalid(
            ("query", name), f"{value[:40]!r} is outside 1970..2100", "time_out_of_range"
        )
    return seconds


def resolve_range(
    start: str | None, end: str | None, now: float, max_days: int
) -> tuple[float, float]:
    """The range asked for: `to` defaults to now, `from` to 30 days before `to`."""
    to = parse_time(end, "to") if end is not None else now
    begin = parse_time(start, "from") if start is not None else max(0.0, to - DEFAULT_DAYS * DAY_S)
    if begin >= to:
        raise AdminProblem.invalid(
            ("query", "from"), f"from ({begin:g}) must be before to ({to:g})", "empty_range"
        )
    if to - begin > max_days * DAY_S:
        raise AdminProblem.invalid(
            ("query", "from"),
            f"the range spans {(to - begin) / DAY_S:.0f} days; at most {max_days} here",
            "range_too_long",
        )
    return begin, to


def cookie_value(token: str) -> str:
    """What the login cookie holds: an HMAC of the admin token, never the token itself."""
    return hmac.new(token.encode(), b"whatsray analytics page", hashlib.sha256).hexdigest()


class _AnalyticsApi:
    def __init__(
        self, store: AdminStorePort, numbers: tuple[str, ...], now: Callable[[], float]
    ) -> None:
        self.store = store
        self.numbers = numbers
        self.now = now

    def _number(self, given: str | None) -> str | None:
        return served_number(self.numbers, given, ("query", "phone_number_id"))

    async def summary(
        self,
        start: Annotated[TimeParam, Query(alias="from")] = None,
        to: TimeParam = None,
        phone_number_id: NumberFilter = None,
    ) -> SummaryOut:
        number = self._number(phone_number_id)
        begin, end = resolve_range(start, to, self.now(), MAX_SUMMARY_DAYS)
        return SummaryOut.model_validate(await self.store.analytics_summary(begin, end, number))

    async def daily(
        self,
        start: Annotated[TimeParam, Query(alias="from")] = None,
        to: TimeParam = None,
        phone_number_id: NumberFilter = None,
    ) -> DailyOut:
        number = self._number(phone_number_id)
        begin, end = resolve_range(start, to, self.now(), MAX_DAILY_DAYS)
        return DailyOut.model_validate(await self.store.analytics_daily(begin, end, number))

    async def export(
        self,
        table: Annotated[ExportTable, Path(description="The table (or `daily`, the series).")],
        start: Annotated[TimeParam, Query(alias="from")] = None,
        to: TimeParam = None,
        phone_number_id: NumberFilter = None,
    ) -> Response:
        number = self._number(phone_number_id)
        if table == "daily" or start is not None or to is not None:
            limit = MAX_DAILY_DAYS if table == "daily" else MAX_SUMMARY_DAYS
            begin, end = resolve_range(start, to, self.now(), limit)
            data = await self.store.export_table(table, begin, end, number)
        else:
            data = await self.store.export_table(table, None, None, number)
        return Response(
            data,
            media_type=PARQUET,
            headers={"Content-Disposition": f'attachment; filename="{table}.parquet"'},
        )


PARQUET = "application/vnd.apache.parquet"


def add_analytics_routes(
    router: APIRouter,
    *,
    admin_token: str,
    store: AdminStorePort,
    numbers: tuple[str, ...],
    now: Callable[[], float],
) -> None:
    """The analytics routes, under the admin router's `/api`, and the page at `/analytics`."""
    auth = BearerAuth(admin_token)
    expected = cookie_value(admin_token)

    def has_cookie(request: Request) -> bool:
        given = request.cookies.get(COOKIE)
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    api = _AnalyticsApi(store, numbers, now)
    analytics = APIRouter(
        prefix="/analytics",
        tags=["analytics"],
        route_class=guarded_route_class(auth, cookie=has_cookie),
    )
    analytics.add_api_route(
        "/summary",
        api.summary,
        methods=["GET"],
        operation_id="analytics_summary",
        summary="Conversation analytics of a time range",
        description=(
            "Conversations, messages, turns per agent, time to first reply, containment,"
            " handoffs and time to a human reply, the FAQ's I-don't-know rate, dead letters and"
            " template fallbacks, windows closed unanswered, opt-ins. `from` defaults to 30 days"
            " before `to`, `to` to now. Definitions: docs/analytics.md."
        ),
        response_model_by_alias=True,
    )
    analytics.add_api_route(
        "/daily",
        api.daily,
        methods=["GET"],
        operation_id="analytics_daily",
        summary="The same figures per UTC day (every day of the range, at most 400)",
        response_model_by_alias=True,
    )
    analytics.add_api_route(
        "/export/{table}",
        api.export,
        methods=["GET"],
        operation_id="analytics_export",
        summary="A table as Parquet (for a BI tool)",
        description=(
            "Made by DuckDB's `COPY ... TO`. Without `from`/`to` the whole table (`daily`:"
            " the last 30 days); with them, the rows of that range (contacts and chats are not"
            " filtered by time). `messages` leaves out the raw payloads."
        ),
        response_class=Response,
        responses={200: {"content": {PARQUET: {}}, "description": "The Parquet file."}},
    )
    router.include_router(analytics)
    _add_page(router, auth, admin_token, has_cookie)


def _page_html() -> str:
    return resources.files("whatsray.admin").joinpath("static/analytics.html").read_text("utf-8")


def _login_form(message: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>whatsray analytics</title>"
        "<meta name='viewport' content='width=device-width'></head>"
        "<body style='font-family:sans-serif;max-width:24rem;margin:4rem auto'>"
        "<h1>whatsray analytics</h1>"
        f"<p>{html.escape(message)}</p>"
        "<form method='post' action='/analytics/login'>"
        "<label>Admin token <input type='password' name='token' id='token' autofocus></label> "
        "<button type='submit' id='login'>Log in</button></form></body></html>"
    )


def _add_page(
    router: APIRouter, auth: BearerAuth, token: str, has_cookie: Callable[[Request], bool]
) -> None:
    async def page(request: Request) -> Response:
        header = request.headers.get("authorization")
        if (header is not None and auth.check(header) is None) or has_cookie(request):
            return HTMLResponse(_page_html(), headers={"Cache-Control": "no-store"})
        return HTMLResponse(_login_form("Log in with the admin token."), status_code=401)

    async def login(request: Request) -> Response:
        body = await request.body()
        fields = parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))
        given = (fields.get("token") or [""])[0].strip()
        if auth.check(f"Bearer {given}") is not None:
            return HTMLResponse(_login_form("That is not the admin token."), status_code=403)
        response = RedirectResponse("/analytics", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie_value(token),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    # Plain routes (not in the OpenAPI document), outside the router's `/api` prefix.
    router.routes.append(Route("/analytics", page, methods=["GET"], include_in_schema=False))
    router.routes.append(
        Route("/analytics/login", login, methods=["POST"], include_in_schema=False)
    )
