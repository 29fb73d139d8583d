"""The guard around every admin route: auth first, then refusals answered as `ErrorBody`.

The check runs in the route class, *before* FastAPI reads the body or the parameters, so an
unauthenticated caller gets 401/403 and learns nothing about validation. FastAPI's validation
errors, its own refusals (a body it cannot decode) and `AdminProblem`s raised by the handlers
become the same `ErrorBody` shape, inside the router: the app that mounts it needs no exception
handlers of its own. A query parameter the route does not take is a 422, as an unknown body
field is (a typo'd `ofset` must not silently give the first page), and so is a parameter given
twice (a route that reads the raw `Request` checks its query itself).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from starlette.exceptions import HTTPException

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


def _http_problem(exc: HTTPException) -> AdminProblem:
    """FastAPI's own refusals outside validation: a 400 is a body it could not decode."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, ValueError):  # e.g. bytes that are not UTF-8
        return AdminProblem.invalid(("body",), f"not valid JSON ({cause})", "json_invalid")
    try:
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    except ValueError:
        error = f"http_{exc.status_code}"
    headers = dict(exc.headers) if exc.headers else None
    return AdminProblem(exc.status_code, error, str(exc.detail), headers=headers)


def _query_params(dependant: Dependant) -> dict[str, bool] | None:
    """The query parameters a route takes (its dependencies' too): name -> may repeat (a list).
    None when it reads the raw `Request`, and so may read any parameter itself."""
    if dependant.request_param_name is not None:
        return None
    params = {
        field.alias: _is_list(field.field_info.annotation) for field in dependant.query_params
    }
    for sub in dependant.dependencies:
        if isinstance(sub.call, SecurityBase):
            continue  # the bearer scheme reads the Authorization header (FastAPI < 0.137 via
            # the raw `Request`), never the query
        taken = _query_params(sub)
        if taken is None:
            return None
        params.update(taken)
    return params


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_list(arg) for arg in get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)


def _query_problem(request: Request, known: dict[str, bool]) -> AdminProblem | None:
    """A 422 for query parameters the route does not take, or a single one given twice."""
    takes = f"this route takes {', '.join(sorted(known))}" if known else "this route takes none"
    fields: list[FieldError] = []
    for name in dict.fromkeys(request.query_params):
        if name not in known:
            msg, type_ = f"unknown parameter; {takes}", "extra_forbidden"
        elif not known[name] and len(values := request.query_params.getlist(name)) > 1:
            msg, type_ = f"given {len(values)} times; give it once", "repeated"
        else:
            continue
        fields.append(FieldError(loc=["query", name[:64]], msg=msg, type=type_))
    if not fields:
        return None
    sentences = [f"{_where(field.loc)}: {field.msg}" for field in fields]
    return AdminProblem(422, "invalid_request", "; ".join(sentences), fields)


def guarded_route_class(
    auth: BearerAuth, *, cookie: Callable[[Request], bool] | None = None
) -> type[APIRoute]:
    """An `APIRoute` class for the admin router (kept when the router is included elsewhere).
    `cookie(request)`: a GET without an Authorization header is let in when it says so (the
    analytics page's login cookie, docs/analytics.md); never a request that changes things."""

    class AdminRoute(APIRoute):
        """Auth first, then FastAPI's handler; its refusals become `ErrorBody` answers."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()
            query_params = _query_params(self.dependant)

            async def guarded(request: Request) -> Response:
                header = request.headers.get("authorization")
                failure = auth.check(header)
                if failure is not None and header is None and request.method == "GET":
                    failure = None if cookie is not None and cookie(request) else failure
                if failure is not None:
                    return AdminProblem(
                        failure.status, failure.error, failure.message, headers=failure.headers
                    ).response()
                bad_query = None if query_params is None else _query_problem(request, query_params)
                if bad_query is not None:
                    return bad_query.response()
                try:
                    return await handle(request)
                except RequestValidationError as exc:
                    return _validation_problem(exc).response()
                except HTTPException as exc:
                    return _http_problem(exc).response()
                except AdminProblem as problem:
                    return problem.response()

            return guarded

    return AdminRoute
