"""Parse a Graph API send body back into the models of `messages.py`, checking it as Meta does.

The JSON is walked by hand so that every error names its path in the body (`text.body`,
`interactive.action.buttons[1].reply.title`), as Meta's error details do. Limits are checked by
the models themselves; this module checks presence, types and the envelope.
"""

from __future__ import annotations

from typing import Any

from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.messages import (
    INVALID_VALUE,
    MEDIA_TYPES,
    MISSING_PARAMETER,
    ListMessage,
    ListRow,
    ListSection,
    MarkAsRead,
    MediaMessage,
    MediaType,
    Message,
    OutboundMessage,
    ReactionMessage,
    ReplyButton,
    ReplyButtonsMessage,
    TemplateComponent,
    TemplateMessage,
    TemplateParameter,
    TextMessage,
    invalid,
    is_bsuid,
)


def _missing(path: str) -> MessageValidationError:
    return invalid(path, "required parameter is missing", MISSING_PARAMETER)


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise _missing(path)
    if not isinstance(value, dict):
        raise invalid(path, "must be an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        raise _missing(path)
    if not isinstance(value, list):
        raise invalid(path, "must be an array")
    return value


def _opt_str(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(path, "must be a string")
    return value


def _str(parent: dict[str, Any], key: str, path: str) -> str:
    value = _opt_str(parent, key, path)
    if value is None:
        raise _missing(path)
    return value


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    to = _opt_str(body, "to", "to")
    recipient = _opt_str(body, "recipient", "recipient")
    if to is not None and recipient is not None:
        raise invalid("to, recipient", "send exactly one of to and recipient, not both")
    if recipient is not None and not is_bsuid(recipient):
        raise invalid("recipient", f"{recipient!r} is not a BSUID (like US.1349...)", INVALID_VALUE)
    if to is not None and is_bsuid(to):
        raise invalid("to", "a BSUID goes in recipient, not in to", INVALID_VALUE)
    target = to if to is not None else recipient
    if target is None:
        raise invalid("to", "required parameter is missing (or recipient)", MISSING_PARAMETER)
    recipient_type = _opt_str(body, "recipient_type", "recipient_type") or "individual"
    if recipient_type not in {"individual", "group"}:
        raise invalid("recipient_type", "must be individual or group", INVALID_VALUE)
    reply_to = None
    if body.get("context") is not None:
        reply_to = _str(_obj(body["context"], "context"), "message_id", "context.message_id")
    return {
        "to": target,
        "recipient_type": recipient_type,
        "reply_to": reply_to,
        "callback_data": _opt_str(body, "biz_opaque_callback_data", "biz_opaque_callback_data"),
    }


def _parse_text(body: dict[str, Any], envelope: dict[str, Any]) -> TextMessage:
    text = _obj(body.get("text"), "text")
    preview_url = text.get("preview_url", False)
    if not isinstance(preview_url, bool):
        raise invalid("text.preview_url", "must be a boolean")
    return TextMessage(**envelope, body=_str(text, "body", "text.body"), preview_url=preview_url)


def _parse_media(kind: MediaType) -> Any:
    def parse(body: dict[str, Any], envelope: dict[str, Any]) -> MediaMessage:
        media = _obj(body.get(kind), kind)
        return MediaMessage(
            **envelope,
            media_type=kind,
            **{
                field: _opt_str(media, key, f"{kind}.{key}")
                for field, key in (
                    ("media_id", "id"),
                    ("link", "link"),
                    ("caption", "caption"),
                    ("filename", "filename"),
                )
            },
        )

    return parse


def _parse_component(raw: Any, path: str) -> TemplateComponent:
    component = _obj(raw, path)
    index = component.get("index")
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise invalid(f"{path}.index", "must be a number")
    parameters = []
    for j, param in enumerate(_list(component.get("parameters", []), f"{path}.parameters")):
        param_path = f"{path}.parameters[{j}]"
        param = _obj(param, param_path)
        _str(param, "type", f"{param_path}.type")
        for key in ("text", "payload", "parameter_name"):
            _opt_str(param, key, f"{param_path}.{key}")
        parameters.append(TemplateParameter(**param))
    return TemplateComponent(
        type=_str(component, "type", f"{path}.type"),
        sub_type=_opt_str(component, "sub_type", f"{path}.sub_type"),
        index=index,
        parameters=tuple(parameters),
    )


def _parse_template(body: dict[str, Any], envelope: dict[str, Any]) -> TemplateMessage:
    template = _obj(body.get("template"), "template")
    language = _obj(template.get("language"), "template.language")
    components = _list(template.get("components", []), "template.components")
    return TemplateMessage(
        **envelope,
        name=_str(template, "name", "template.name"),
        language=_str(language, "code", "template.language.code"),
        components=tuple(
            _parse_component(c, f"template.components[{i}]") for i, c in enumerate(components)
        ),
    )


def _parse_frame(interactive: dict[str, Any]) -> dict[str, Any]:
    header = None
    if interactive.get("header") is not None:
        raw_header = _obj(interactive["header"], "interactive.header")
        header_type = _str(raw_header, "type", "interactive.header.type")
        if header_type != "text":
            raise invalid(
                "interactive.header.type", f"unsupported header type {header_type!r}", INVALID_VALUE
            )
        header = _str(raw_header, "text", "interactive.header.text")
    footer = None
    if interactive.get("footer") is not None:
        footer = _str(
            _obj(interactive["footer"], "interactive.footer"), "text", "interactive.footer.text"
        )
    body = _str(_obj(interactive.get("body"), "interactive.body"), "text", "interactive.body.text")
    return {"header": header, "footer": footer, "body": body}


def _parse_buttons(action: dict[str, Any]) -> dict[str, Any]:
    buttons = []
    for i, raw in enumerate(_list(action.get("buttons"), "interactive.action.buttons")):
        path = f"interactive.action.buttons[{i}]"
        button = _obj(raw, path)
        if _str(button, "type", f"{path}.type") != "reply":
            raise invalid(f"{path}.type", "must be reply", INVALID_VALUE)
        reply = _obj(button.get("reply"), f"{path}.reply")
        buttons.append(
            ReplyButton(
                id=_str(reply, "id", f"{path}.reply.id"),
                title=_str(reply, "title", f"{path}.reply.title"),
            )
        )
    return {"buttons": tuple(buttons)}


def _parse_sections(action: dict[str, Any]) -> dict[str, Any]:
    sections = []
    for i, raw in enumerate(_list(action.get("sections"), "interactive.action.sections")):
        path = f"interactive.action.sections[{i}]"
        section = _obj(raw, path)
        rows = []
        for j, raw_row in enumerate(_list(section.get("rows"), f"{path}.rows")):
            row_path = f"{path}.rows[{j}]"
            row = _obj(raw_row, row_path)
            rows.append(
                ListRow(
                    id=_str(row, "id", f"{row_path}.id"),
                    title=_str(row, "title", f"{row_path}.title"),
                    description=_opt_str(row, "description", f"{row_path}.description"),
                )
            )
        sections.append(
            ListSection(title=_opt_str(section, "title", f"{path}.title"), rows=tuple(rows))
        )
    button = _str(action, "button", "interactive.action.button")
    return {"button": button, "sections": tuple(sections)}


def _parse_interactive(body: dict[str, Any], envelope: dict[str, Any]) -> Message:
    interactive = _obj(body.get("interactive"), "interactive")
    kind = _str(interactive, "type", "interactive.type")
    action = _obj(interactive.get("action"), "interactive.action")
    if kind == "button":
        return ReplyButtonsMessage(
            **envelope, **_parse_frame(interactive), **_parse_buttons(action)
        )
    if kind == "list":
        return ListMessage(**envelope, **_parse_frame(interactive), **_parse_sections(action))
    raise invalid("interactive.type", f"unsupported interactive type {kind!r}", INVALID_VALUE)


def _parse_reaction(body: dict[str, Any], envelope: dict[str, Any]) -> ReactionMessage:
    reaction = _obj(body.get("reaction"), "reaction")
    return ReactionMessage(
        **envelope,
        message_id=_str(reaction, "message_id", "reaction.message_id"),
        emoji=_str(reaction, "emoji", "reaction.emoji"),
    )


def _parse_mark_as_read(body: dict[str, Any]) -> MarkAsRead:
    status = body.get("status")
    if status != "read":
        raise invalid("status", f"must be read (got {status!r})", INVALID_VALUE)
    typing = False
    if body.get("typing_indicator") is not None:
        indicator = _obj(body["typing_indicator"], "typing_indicator")
        kind = _str(indicator, "type", "typing_indicator.type")
        if kind != "text":
            raise invalid("typing_indicator.type", f"must be text (got {kind!r})", INVALID_VALUE)
        typing = True
    return MarkAsRead(message_id=_str(body, "message_id", "message_id"), typing_indicator=typing)


_PARSERS: dict[str, Any] = {
    "text": _parse_text,
    "template": _parse_template,
    "interactive": _parse_interactive,
    "reaction": _parse_reaction,
    **{kind: _parse_media(kind) for kind in MEDIA_TYPES},
}


def parse_send_body(body: dict[str, Any]) -> OutboundMessage:
    """The body of `validate_send_body` (see there)."""
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    product = _str(body, "messaging_product", "messaging_product")
    if product != "whatsapp":
        raise invalid("messaging_product", f"must be whatsapp (got {product!r})", INVALID_VALUE)
    if "status" in body:
        return _parse_mark_as_read(body)
    envelope = _envelope(body)
    kind = body.get("type")
    if kind is None:
        if "text" not in body:
            raise _missing("type")
        kind = "text"  # Meta's default when type is left out
    if not isinstance(kind, str):
        raise invalid("type", "must be a string")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise invalid("type", f"unsupported message type {kind!r}", INVALID_VALUE)
    result: OutboundMessage = parser(body, envelope)
    return result
