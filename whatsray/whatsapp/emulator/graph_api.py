"""The Graph API routes (`/{version}/...`) and the media download link.

Every request is checked the way Meta does it (API version in the path, then the Bearer token),
then injected faults apply (latency, held responses, a share of 5xx), and the answer is recorded
for `GET /emulator/requests`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.emulator.media import DOWNLOAD_PATH
from whatsray.whatsapp.emulator.meta_errors import GraphResult, graph_error

_VERSION = re.compile(r"v\d+\.\d+")
_STANDARD_MPS = 80.0

Handler = Callable[[Request, bytes], Awaitable[GraphResult]]


def _unknown_object(verb: str, object_id: str) -> GraphResult:
    return graph_error(
        100,
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
    )


def _level(throughput_mps: float) -> str:
    """Meta's name for a number's throughput tier: STANDARD is the default 80 msg/s, HIGH the
    upgrade (up to 1000)."""
    return "HIGH" if throughput_mps > _STANDARD_MPS else "STANDARD"


class GraphApi:
    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def routes(self) -> list[Route]:
        return [
            Route(DOWNLOAD_PATH, self.download, methods=["GET"]),
            Route("/{version}/{phone_number_id}/messages", self.messages, methods=["POST"]),
            Route("/{version}/{phone_number_id}/media", self.upload_media, methods=["POST"]),
            Route("/{version}/{object_id}", self.get_object, methods=["GET"]),
            Route("/{version}/{object_id}", self.delete_object, methods=["DELETE"]),
        ]

    # --- routes -----------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        async def handle(_: Request, raw: bytes) -> GraphResult:
            try:
                body = json.loads(raw)
            except ValueError:
                return graph_error(100, "The request body could not be parsed as JSON.")
            return self._emulator.send(request.path_params["phone_number_id"], body)

        return await self._graph(request, handle)

    async def upload_media(self, request: Request) -> Response:
        async def handle(request: Request, _: bytes) -> GraphResult:
            try:
                form = await request.form()
            except Exception:
                return graph_error(100, "The request body must be multipart/form-data.")
            upload = form.get("file")
            data = await upload.read() if isinstance(upload, UploadFile) else None
            mime = form.get("type")
            if not isinstance(mime, str) and isinstance(upload, UploadFile):
                mime = upload.content_type
            product = form.get("messaging_product")
            return self._emulator.media.upload(
                request.path_params["phone_number_id"],
                messaging_product=product if isinstance(product, str) else None,
                data=data,
                mime_type=mime if isinstance(mime, str) else None,
                filename=upload.filename if isinstance(upload, UploadFile) else None,
            )

        return await self._graph(request, handle)

    async def get_object(self, request: Request) -> Response:
        async def handle(request: Request, _: bytes) -> GraphResult:
            object_id = request.path_params["object_id"]
            config = self._emulator.config
            number = config.number(object_id)
            if number is not None:
                return GraphResult(
                    200,
                    {
                        "verified_name": number.verified_name,
                        "display_phone_number": number.display_phone_number,
                        "id": number.id,
                        "quality_rating": "GREEN",
                        "throughput": {"level": _level(config.throughput_of(number.id))},
                    },
                )
            info = self._emulator.media.info(object_id, str(request.base_url))
            return info if info is not None else _unknown_object("get", object_id)

        return await self._graph(request, handle)

    async def delete_object(self, request: Request) -> Response:
        async def handle(request: Request, _: bytes) -> GraphResult:
            object_id = request.path_params["object_id"]
            if self._emulator.media.delete(object_id):
                return GraphResult(200, {"success": True})
            return _unknown_object("delete", object_id)

        return await self._graph(request, handle)

    async def download(self, request: Request) -> Response:
        query = request.url.query
        if not self._authorized(request):
            result = graph_error(190)
            self._emulator.record_request("GET", request.url.path, query, 401, None, result.body)
            return JSONResponse(result.body, status_code=result.status)
        item = self._emulator.media.download(request.query_params.get("hash", ""))
        if item is None:
            # Meta: a 404 means the URL expired; fetch a fresh one with GET /{media_id}.
            self._emulator.record_request("GET", request.url.path, query, 404, None, None)
            return Response(status_code=404)
        self._emulator.record_request(
            "GET", request.url.path, query, 200, None, {"bytes": item.file_size}
        )
        return Response(item.data, media_type=item.mime_type)

    # --- the common pipeline ----------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expected = self._emulator.config.access_token
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), expected.encode()
        )

    async def _graph(self, request: Request, handler: Handler) -> Response:
        raw = await request.body()
        result = await self._process(request, raw, handler)
        self._emulator.record_request(
            request.method,
            request.url.path,
            request.url.query,
            result.status,
            await _recorded_body(request, raw),
            result.body,
        )
        return JSONResponse(result.body, status_code=result.status)

    async def _process(self, request: Request, raw: bytes, handler: Handler) -> GraphResult:
        version = request.path_params.get("version", "")
        if not _VERSION.fullmatch(version):
            return graph_error(2500, f"Unknown path components: /{version}")
        if not self._authorized(request):
            return graph_error(190)
        faults = self._emulator.faults
        if faults.latency_s > 0:
            await asyncio.sleep(faults.latency_s)  # real time: it is the client's clock that counts
        held = faults.take_timeout()
        if held is not None and not held.apply:
            await asyncio.sleep(held.seconds)
            return graph_error(2)
        code = faults.take_random_error()
        result = graph_error(code) if code is not None else await handler(request, raw)
        if held is not None:
            await asyncio.sleep(held.seconds)
        return result


async def _recorded_body(request: Request, raw: bytes) -> Any:
    """The request body as tests want to read it: JSON, form fields (files summarised), or text."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form()
        except Exception:
            return raw[:1000].decode("utf-8", "replace")
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                fields[key] = {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": value.size,
                }
            else:
                fields[key] = value
        return fields
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:1000].decode("utf-8", "replace")
