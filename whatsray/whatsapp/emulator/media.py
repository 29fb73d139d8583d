"""Media endpoints: upload, URL lookup (a link that expires after 5 minutes), download, delete.

Types and size limits follow reference section 8. Download links point back at the emulator, at
a path shaped like Meta's lookaside URL, and need the same Bearer token as the Graph API.
"""

from __future__ import annotations

from whatsray.whatsapp.emulator.clock import Clock
from whatsray.whatsapp.emulator.config import EmulatorConfig
from whatsray.whatsapp.emulator.meta_errors import GraphResult, graph_error
from whatsray.whatsapp.emulator.state import EmulatorState, MediaItem

DOWNLOAD_PATH = "/whatsapp_business/attachments/"

_MB = 1024 * 1024
_DOCUMENT_TYPES = (
    "text/plain",
    "application/pdf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
# MIME type -> largest accepted upload in bytes.
MAX_BYTES: dict[str, int] = {
    "image/jpeg": 5 * _MB,
    "image/png": 5 * _MB,
    "image/webp": 500 * 1024,
    "audio/aac": 16 * _MB,
    "audio/amr": 16 * _MB,
    "audio/mpeg": 16 * _MB,
    "audio/mp4": 16 * _MB,
    "audio/ogg": 16 * _MB,
    "video/mp4": 16 * _MB,
    "video/3gpp": 16 * _MB,
    **dict.fromkeys(_DOCUMENT_TYPES, 100 * _MB),
}


def base_mime(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


class MediaService:
    def __init__(self, config: EmulatorConfig, clock: Clock, state: EmulatorState) -> None:
        self._config = config
        self._clock = clock
        self._state = state

    def upload(
        self,
        phone_number_id: str,
        *,
        messaging_product: str | None,
        data: bytes | None,
        mime_type: str | None,
        filename: str | None,
    ) -> GraphResult:
        if self._config.number(phone_number_id) is None:
            return graph_error(100, f"Object with ID '{phone_number_id}' does not exist.")
        if messaging_product != "whatsapp":
            return graph_error(100, "The parameter messaging_product is required.")
        if data is None:
            return graph_error(100, "The parameter file is required.")
        if not mime_type:
            return graph_error(100, "The parameter type is required.")
        limit = MAX_BYTES.get(base_mime(mime_type))
        if limit is None:
            allowed = ", ".join(sorted(MAX_BYTES))
            return graph_error(
                131053, f"Param file must be a file with one of the following types: {allowed}"
            )
        if len(data) > limit:
            return graph_error(
                131053, f"File is {len(data)} bytes; the limit for {mime_type} is {limit}."
            )
        item = self.create(
            data, mime_type=mime_type, filename=filename, phone_number_id=phone_number_id
        )
        return GraphResult(200, {"id": item.id})

    def create(
        self, data: bytes, *, mime_type: str, filename: str | None, phone_number_id: str | None
    ) -> MediaItem:
        """Store media without Graph checks (the control API uses this for inbound media)."""
        return self._state.media.add(
            data,
            mime_type=mime_type,
            filename=filename,
            phone_number_id=phone_number_id,
            now=self._clock.now(),
        )

    def info(self, media_id: str, base_url: str) -> GraphResult | None:
        """`GET /{media_id}`, or None when no media has that id."""
        item = self._state.media.get(media_id)
        if item is None:
            return None
        expires_at = self._clock.now() + self._config.media_url_ttl_s
        token = self._state.media.issue_url_token(media_id, expires_at=expires_at)
        base = (self._config.public_url or base_url).rstrip("/")
        url = f"{base}{DOWNLOAD_PATH}?mid={media_id}&ext={int(expires_at)}&hash={token}"
        return GraphResult(
            200,
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": item.mime_type,
                "sha256": item.digest.hex(),
                "file_size": item.file_size,
                "id": item.id,
            },
        )

    def delete(self, media_id: str) -> bool:
        return self._state.media.delete(media_id)

    def download(self, token: str) -> MediaItem | None:
        return self._state.media.resolve_url_token(token, now=self._clock.now())
