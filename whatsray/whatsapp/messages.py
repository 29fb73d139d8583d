"""Outbound WhatsApp messages: frozen models that check Meta's limits and build the Graph API body.

Every model validates on construction and raises `MessageValidationError` carrying the code Meta
would answer with (100 for a bad parameter or a broken limit, 131008 for a missing one, 131009
for an invalid value), so a message that breaks a rule is never sent. `to_graph_body()` gives the
exact JSON body for `POST /{phone_number_id}/messages`; `validate_send_body()` parses such a body
back. The emulator uses the same function on what it receives, so client and emulator share rules.

The recipient is one string: a phone number (sent as `to`) or a business-scoped user id (BSUID,
like `US.13491208655302741918`, sent as `recipient`), so exactly one of the two is ever sent.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from whatsray.whatsapp import limits
from whatsray.whatsapp.errors import MessageValidationError

INVALID_PARAMETER = 100  # a bad parameter, a wrong type, or a broken limit
MISSING_PARAMETER = 131008  # a required parameter is missing
INVALID_VALUE = 131009  # a parameter's value is not one Meta accepts

MediaType = Literal["image", "video", "audio", "document", "sticker"]
MEDIA_TYPES: tuple[MediaType, ...] = ("image", "video", "audio", "document", "sticker")
_CAPTIONED: frozenset[str] = frozenset({"image", "video", "document"})

_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*")
_PHONE = re.compile(r"\+?\d{5,15}")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


# Meta's titles for these codes (Meta: support/error-codes); the specifics go in `details`,
# as in Meta's own `error_data.details`, so local and remote errors read the same.
META_TITLES: dict[int, str] = {
    INVALID_PARAMETER: "Invalid parameter",
    MISSING_PARAMETER: "Required parameter is missing",
    INVALID_VALUE: "Parameter value is not valid",
}


def invalid(path: str, problem: str, code: int = INVALID_PARAMETER) -> MessageValidationError:
    """The error for `path` (a Graph body path like `text.body`): `details` names the problem."""
    return MessageValidationError(META_TITLES[code], code=code, details=f"{path}: {problem}")


def is_bsuid(value: str) -> bool:
    """True for a business-scoped user id (`US.1349...`), false for anything else."""
    return _BSUID.fullmatch(value) is not None


def _check_text(value: str, path: str, max_chars: int) -> None:
    if not value:
        raise invalid(path, "must not be empty")
    if len(value) > max_chars:
        raise invalid(path, f"at most {max_chars} characters (got {len(value)})")


def _check_optional_text(value: str | None, path: str, max_chars: int) -> None:
    if value is not None:
        _check_text(value, path, max_chars)


def _check_count(count: int, path: str, noun: str, low: int, high: int) -> None:
    if count < low:
        raise invalid(path, f"at least {low} {noun}")
    if count > high:
        raise invalid(path, f"at most {high} {noun}s (got {count})")


def _check_unique(ids: list[str], path: str) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise invalid(path, f"duplicate id {value!r}; ids must be unique", INVALID_VALUE)
        seen.add(value)


def _from_pydantic(exc: ValidationError) -> MessageValidationError:
    """Turn pydantic's error into ours, keeping one of ours raised inside a validator as is."""
    first = exc.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, MessageValidationError):
        return original
    path = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "missing":
        return invalid(path, "required parameter is missing", MISSING_PARAMETER)
    if first["type"] in {"literal_error", "enum"}:
        return invalid(path, first["msg"], INVALID_VALUE)
    return invalid(path, first["msg"])


class _Frozen(BaseModel):
    """Immutable, rejects unknown constructor arguments, raises `MessageValidationError` only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _from_pydantic(exc) from None


class _GraphBody(_Frozen):
    """A whole body for the messages endpoint."""

    def to_graph_body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_graph_body(cls, body: dict[str, Any]) -> Self:
        """Parse a Graph API body, insisting that it is this kind of message."""
        parsed = validate_send_body(body)
        if not isinstance(parsed, cls):
            raise invalid("type", f"expected a {cls.__name__} body", INVALID_VALUE)
        return parsed


class MarkAsRead(_GraphBody):
    """Mark `message_id` (and earlier messages) as read, optionally showing a typing indicator."""

    message_id: str
    typing_indicator: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_text(self.message_id, "message_id", 1024)
        return self

    def to_graph_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": self.message_id,
        }
        if self.typing_indicator:
            body["typing_indicator"] = {"type": "text"}
        return body


class _Message(_GraphBody):
    """What every message shares: the recipient, a quoted message, the value Meta echoes back."""

    graph_type: ClassVar[str]

    to: str
    reply_to: str | None = None  # wamid of the quoted message (`context.message_id`)
    callback_data: str | None = None  # `biz_opaque_callback_data`, echoed on status webhooks
    recipient_type: Literal["individual", "group"] = "individual"

    @property
    def to_is_bsuid(self) -> bool:
        return is_bsuid(self.to)

    @model_validator(mode="after")
    def _check_envelope(self) -> Self:
        if self.recipient_type == "group" or is_bsuid(self.to):
            _check_text(self.to, "to", 256)
        elif _PHONE.fullmatch(_PHONE_SEPARATORS.sub("", self.to)) is None:
            raise invalid("to", f"{self.to!r} is neither a phone number nor a BSUID")
        _check_optional_text(self.reply_to, "context.message_id", 1024)
        if self.callback_data is not None and len(self.callback_data) > (
            limits.MAX_CALLBACK_DATA_CHARS
        ):
            raise invalid(
                "biz_opaque_callback_data",
                f"at most {limits.MAX_CALLBACK_DATA_CHARS} characters "
                f"(got {len(self.callback_data)})",
            )
        return self

    def _envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": self.recipient_type,
            ("recipient" if self.to_is_bsuid else "to"): self.to,
            "type": self.graph_type,
        }
        if self.reply_to is not None:
            body["context"] = {"message_id": self.reply_to}
        if self.callback_data is not None:
            body["biz_opaque_callback_data"] = self.callback_data
        return body


class TextMessage(_Message):
    graph_type: ClassVar[str] = "text"

    body: str
    preview_url: bool = False

    @model_validator(mode="after")
    def _check_text_body(self) -> Self:
        _check_text(self.body, "text.body", limits.MAX_TEXT_BODY_CHARS)
        return self

    def to_graph_body(self) -> dict[str, Any]:
        return {**self._envelope(), "text": {"body": self.body, "preview_url": self.preview_url}}


class MediaMessage(_Message):
    """An image, video, audio, document or sticker, by uploaded media id or by https link."""

    graph_type: ClassVar[str] = "media"  # replaced by `media_type` in the body

    media_type: MediaType
    media_id: str | None = None
    link: str | None = None
    caption: str | None = None  # image, video and document only
    filename: str | None = None  # document only

    @model_validator(mode="after")
    def _check_media(self) -> Self:
        kind = self.media_type
        if self.media_id is not None and self.link is not None:
            raise invalid(kind, "send either id or link, not both")
        if self.media_id is None and self.link is None:
            raise invalid(
                f"{kind}.id", "required parameter is missing (or link)", MISSING_PARAMETER
            )
        _check_optional_text(self.media_id, f"{kind}.id", 256)
        if self.link is not None and not self.link.startswith(("https://", "http://")):
            raise invalid(f"{kind}.link", "must be an http(s) URL")
        if self.caption is not None:
            if kind not in _CAPTIONED:
                raise invalid(f"{kind}.caption", f"{kind} messages cannot have a caption")
            _check_text(self.caption, f"{kind}.caption", limits.MAX_MEDIA_CAPTION_CHARS)
        if self.filename is not None:
            if kind != "document":
                raise invalid(f"{kind}.filename", "only documents have a filename")
            _check_text(self.filename, f"{kind}.filename", 240)
        return self

    def to_graph_body(self) -> dict[str, Any]:
        media: dict[str, Any] = {}
        if self.media_id is not None:
            media["id"] = self.media_id
        if self.link is not None:
            media["link"] = self.link
        if self.caption is not None:
            media["caption"] = self.caption
        if self.filename is not None:
            media["filename"] = self.filename
        return {**self._envelope(), "type": self.media_type, self.media_type: media}


class TemplateParameter(BaseModel):
    """One template parameter. Extra keys (`image`, `currency`, `date_time`...) are kept as is."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str
    text: str | None = None
    payload: str | None = None
    parameter_name: str | None = None  # named parameters ({{name}} templates)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _from_pydantic(exc) from None

    @classmethod
    def of_text(cls, text: str, *, name: str | None = None) -> TemplateParameter:
        return cls(type="text", text=text, parameter_name=name)

    def to_graph(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TemplateComponent(_Frozen):
    """A header, body or button component with its parameters."""

    type: str
    parameters: tuple[TemplateParameter, ...] = ()
    sub_type: str | None = None  # buttons: quick_reply, url, copy_code...
    index: int | None = None  # buttons: position of the button in the template

    @classmethod
    def body(cls, *texts: str) -> TemplateComponent:
        return cls(type="body", parameters=tuple(TemplateParameter.of_text(t) for t in texts))

    def to_graph(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.sub_type is not None:
            out["sub_type"] = self.sub_type
        if self.index is not None:
            out["index"] = str(self.index)
        out["parameters"] = [p.to_graph() for p in self.parameters]
        return out


class TemplateMessage(_Message):
    """An approved template: the only kind Meta delivers outside the 24 h window."""

    graph_type: ClassVar[str] = "template"

    name: str
    language: str  # e.g. "en_US"
    components: tuple[TemplateComponent, ...] = ()

    @model_validator(mode="after")
    def _check_template(self) -> Self:
        _check_text(self.name, "template.name", limits.MAX_TEMPLATE_NAME_CHARS)
        _check_text(self.language, "template.language.code", 32)
        for i, component in enumerate(self.components):
            path = f"template.components[{i}]"
            _check_text(component.type, f"{path}.type", 64)
            if component.type == "button":
                if component.sub_type is None:
                    raise invalid(f"{path}.sub_type", "required for a button", MISSING_PARAMETER)
                if component.index is None:
                    raise invalid(f"{path}.index", "required for a button", MISSING_PARAMETER)
            if component.index is not None and component.index < 0:
                raise invalid(f"{path}.index", "must not be negative", INVALID_VALUE)
            for j, parameter in enumerate(component.parameters):
                _check_text(parameter.type, f"{path}.parameters[{j}].type", 64)
        return self

    def to_graph_body(self) -> dict[str, Any]:
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if self.components:
            template["components"] = [c.to_graph() for c in self.components]
        return {**self._envelope(), "template": template}


class ReplyButton(_Frozen):
    id: str
    title: str


class _Interactive(_Message):
    graph_type: ClassVar[str] = "interactive"

    body: str
    header: str | None = None  # a text header
    footer: str | None = None

    def _check_frame(self, max_body: int) -> None:
        _check_text(self.body, "interactive.body.text", max_body)
        _check_optional_text(
            self.header, "interactive.header.text", limits.MAX_INTERACTIVE_HEADER_CHARS
        )
        _check_optional_text(
            self.footer, "interactive.footer.text", limits.MAX_INTERACTIVE_FOOTER_CHARS
        )

    def _interactive(self, kind: str, action: dict[str, Any]) -> dict[str, Any]:
        interactive: dict[str, Any] = {"type": kind}
        if self.header is not None:
            interactive["header"] = {"type": "text", "text": self.header}
        interactive["body"] = {"text": self.body}
        if self.footer is not None:
            interactive["footer"] = {"text": self.footer}
        interactive["action"] = action
        return {**self._envelope(), "interactive": interactive}


class ReplyButtonsMessage(_Interactive):
    """Up to three quick-reply buttons under a body text."""

    buttons: tuple[ReplyButton, ...]

    @model_validator(mode="after")
    def _check_buttons(self) -> Self:
        self._check_frame(limits.MAX_BUTTONS_BODY_CHARS)
        path = "interactive.action.buttons"
        _check_count(len(self.buttons), path, "button", 1, limits.MAX_REPLY_BUTTONS)
        for i, button in enumerate(self.buttons):
            _check_text(button.id, f"{path}[{i}].reply.id", limits.MAX_BUTTON_ID_CHARS)
            _check_text(button.title, f"{path}[{i}].reply.title", limits.MAX_BUTTON_TITLE_CHARS)
        _check_unique([b.id for b in self.buttons], path)
        return self

    def to_graph_body(self) -> dict[str, Any]:
        buttons = [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in self.buttons]
        return self._interactive("button", {"buttons": buttons})


class ListRow(_Frozen):
    id: str
    title: str
    description: str | None = None


class ListSection(_Frozen):
    rows: tuple[ListRow, ...]
    title: str | None = None  # required when the list has more than one section


class ListMessage(_Interactive):
    """A menu: a button that opens up to ten rows grouped in sections."""

    button: str
    sections: tuple[ListSection, ...]

    @model_validator(mode="after")
    def _check_list(self) -> Self:
        self._check_frame(limits.MAX_LIST_BODY_CHARS)
        _check_text(self.button, "interactive.action.button", limits.MAX_LIST_BUTTON_CHARS)
        path = "interactive.action.sections"
        _check_count(len(self.sections), path, "section", 1, limits.MAX_LIST_SECTIONS)
        total_rows = sum(len(s.rows) for s in self.sections)
        _check_count(total_rows, path, "row", 1, limits.MAX_LIST_ROWS)
        for i, section in enumerate(self.sections):
            title_path = f"{path}[{i}].title"
            if section.title is None and len(self.sections) > 1:
                raise invalid(
                    title_path, "required when there is more than one section", MISSING_PARAMETER
                )
            _check_optional_text(section.title, title_path, limits.MAX_LIST_SECTION_TITLE_CHARS)
            for j, row in enumerate(section.rows):
                row_path = f"{path}[{i}].rows[{j}]"
                _check_text(row.id, f"{row_path}.id", limits.MAX_LIST_ROW_ID_CHARS)
                _check_text(row.title, f"{row_path}.title", limits.MAX_LIST_ROW_TITLE_CHARS)
                _check_optional_text(
                    row.description,
                    f"{row_path}.description",
                    limits.MAX_LIST_ROW_DESCRIPTION_CHARS,
                )
        _check_unique([r.id for s in self.sections for r in s.rows], f"{path}[].rows")
        return self

    def to_graph_body(self) -> dict[str, Any]:
        sections: list[dict[str, Any]] = []
        for section in self.sections:
            out: dict[str, Any] = {}
            if section.title is not None:
                out["title"] = section.title
            out["rows"] = [row.model_dump(exclude_none=True) for row in section.rows]
            sections.append(out)
        return self._interactive("list", {"button": self.button, "sections": sections})


class ReactionMessage(_Message):
    """React to `message_id` with `emoji`; an empty emoji removes the reaction."""

    graph_type: ClassVar[str] = "reaction"

    message_id: str
    emoji: str = ""

    @model_validator(mode="after")
    def _check_reaction(self) -> Self:
        _check_text(self.message_id, "reaction.message_id", 1024)
        if len(self.emoji) > 16:  # one emoji, possibly a multi-code-point sequence
            raise invalid("reaction.emoji", "must be a single emoji", INVALID_VALUE)
        if self.reply_to is not None:
            raise invalid("context", "a reaction cannot quote a message")
        return self

    @property
    def removes(self) -> bool:
        return self.emoji == ""

    def to_graph_body(self) -> dict[str, Any]:
        reaction = {"message_id": self.message_id, "emoji": self.emoji}
        return {**self._envelope(), "reaction": reaction}


# A message delivered to a chat (`send` returns a wamid for it).
Message = (
    TextMessage
    | MediaMessage
    | TemplateMessage
    | ReplyButtonsMessage
    | ListMessage
    | ReactionMessage
)
# Anything the messages endpoint accepts, mark-as-read included.
OutboundMessage = Message | MarkAsRead


def validate_send_body(body: dict[str, Any]) -> OutboundMessage:
    """Parse and check a body for `POST /{phone_number_id}/messages` the way Meta does.

    Returns the model (a `MarkAsRead` for a read receipt, since Meta shares the endpoint) or
    raises `MessageValidationError` with Meta's code and the path of the offending parameter.
    The emulator runs every body it receives through this, so both sides share the rules.
    """
    from whatsray.whatsapp.send_body_parsing import parse_send_body  # it imports the models

    return parse_send_body(body)
