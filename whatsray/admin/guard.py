"""The guard around every admin route: auth first, then refusals answered as `ErrorBody`.

The check runs in the route class, *before* FastAPI reads the body or the parameters, so an
unauthenticated caller gets 401/403 and learns nothing about validation. FastAPI's validation
errors and `AdminProblem`s raised by the handlers become the same `ErrorBody` shape, inside the
router: the app that mounts it needs no exception handlers of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from whatsray.admin.auth import BearerAuth
from whatsray.admin.models import ErrorBody, FieldError

__all__ = ["AdminProblem", "guarded_route_class"]


class AdminProblem(Exception):
    """A request refused with a 4xx `ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.body = ErrorBody(error=error, message=message, detail=list(detail) if detail else None)
        self.status = status
        self.headers = headers

    @classmethod
    def invalid(cls, loc: tuple[str, ...], msg: str, type_: str) -> AdminProblem:
        """A 422 for one field, shaped like FastAPI's validation errors."""
        error = FieldError(loc=list(loc), msg=msg, type=type_)
        return cls(422, "invalid_request", f"{_where(error.loc)}: {msg}", [error])

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body.model_dump(mode="json", exclude_none=True),
            status_code=self.status,
            headers=self.headers,
        )


def _where(loc: Sequence[str | int]) -> str:
    if not loc:
        return "request"
    place, *rest = loc
    name = ".".join(str(part) for part in rest)
    if place == "body":
        return f"body field '{name}'" if name else "request body"
    if place in ("query", "path", "header", "cookie"):
        return f"{place} parameter '{name}'"
    return ".".join(str(part) for part in loc)


def _validation_problem(exc: RequestValidationError) -> AdminProblem:
    """FastAPI's validation errors as one readable sentence plus the per-field list."""
    fields: list[FieldError] = []
    sentences: list[str] = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        msg = str(error.get("msg", "invalid"))
        type_ = str(error.get("type", "invalid"))
        if type_ == "json_invalid":
            cause = (error.get("ctx") or {}).get("error", "")
            loc, msg = ["body"], f"not valid JSON ({cause})" if cause else "not valid JSON"
        elif loc == ["body"]:
            msg = f"{msg} (send a JSON object with Content-Type: application/json)"
        fields.append(FieldError(loc=loc, msg=msg, type=type_))
        sentences.append(f"{_where(loc)}: {msg}")
    return AdminProblem(422, "invalid_request", "; ".join(sentences), fields)


def guarded_route_class(auth: BearerAuth) -> type[APIRoute]:
    """An `APIRoute` class for the admin router (kept when the router is included elsewhere)."""

    class AdminRoute(APIRoute):
        """Auth first, then FastAPI's handler; its refusals become `ErrorBody` answers."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                failure = auth.check(request.headers.get("authorization"))
                if failure is not None:
                    return AdminProblem(
                        failure.status, failure.error, failure.message, headers=failure.headers
                    ).response()
                try:
                    return await handle(request)
                except RequestValidationError as exc:
                    return _validation_problem(exc).response()
                except AdminProblem as problem:
                    return problem.response()

            return guarded

    return AdminRoute
