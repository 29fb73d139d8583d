"""How `whatsray chat` prints what the bot sent: one `bot> ` block per message, and the buttons
or list rows of an interactive message numbered, so that `/N` can tap them.

Readers are tolerant: a body of a type or shape not known here still prints (`[order]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whatsray.whatsapp.emulator.client import OutboundMessage

BOT = "bot> "
REJECTED = "bot! "
INDENT = " " * len(BOT)


@dataclass(frozen=True, slots=True)
class Option:
    """A reply button or list row the user can tap with `/N`."""

    kind: str  # "button_reply" | "list_reply"
    id: str
    title: str
    description: str | None = None

    def inbound_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.kind, "id": self.id, "title": self.title}
        if self.description:
            message["description"] = self.description
        return message


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def reply_options(message: OutboundMessage) -> list[Option]:
    """The buttons or list rows of an interactive message, in display order."""
    interactive = _obj(message.body.get("interactive"))
    action = _obj(interactive.get("action"))
    options: list[Option] = []
    for button in action.get("buttons") or ():
        reply = _obj(_obj(button).get("reply"))
        options.append(Option("button_reply", _str(reply.get("id")), _str(reply.get("title"))))
    for section in action.get("sections") or ():
        for row in _obj(section).get("rows") or ():
            row = _obj(row)
            description = _str(row.get("description")) or None
            options.append(
                Option("list_reply", _str(row.get("id")), _str(row.get("title")), description)
            )
    return options


def _interactive_lines(interactive: dict[str, Any]) -> list[str]:
    header = _obj(interactive.get("header"))
    lines = [_str(header.get("text"))] if header.get("type") == "text" else []
    lines.append(_str(_obj(interactive.get("body")).get("text")))
    footer = _str(_obj(interactive.get("footer")).get("text"))
    if footer:
        lines.append(f"({footer})")
    action = _obj(interactive.get("action"))
    number = 0
    for button in action.get("buttons") or ():
        number += 1
        lines.append(f"  {number}. {_str(_obj(_obj(button).get('reply')).get('title'))}")
    if action.get("sections") and action.get("button"):
        lines.append(f"[{_str(action['button'])}]")
    for section in action.get("sections") or ():
        title = _str(_obj(section).get("title"))
        if title:
            lines.append(f"  {title}")
        for row in _obj(section).get("rows") or ():
            number += 1
            row = _obj(row)
            description = _str(row.get("description"))
            suffix = f" - {description}" if description else ""
            lines.append(f"  {number}. {_str(row.get('title'))}{suffix}")
    if number:
        lines.append(f"(type /1 to /{number} to choose)" if number > 1 else "(type /1 to choose)")
    elif interactive.get("type") not in ("button", "list"):
        lines.append(f"[interactive {_str(interactive.get('type')) or '?'}]")
    return [line for line in lines if line]


def _content_lines(message: OutboundMessage) -> list[str]:
    kind = message.type
    part = _obj(message.body.get(kind))
    if kind == "text":
        return _str(part.get("body")).splitlines() or [""]
    if kind == "interactive":
        return _interactive_lines(part)
    if kind in ("image", "video", "audio", "document", "sticker"):
        label = _str(part.get("caption")) or _str(part.get("filename"))
        return [f"[{kind}] {label}".rstrip()]
    if kind == "reaction":
        emoji = _str(part.get("emoji"))
        return [f"[reacted {emoji}]" if emoji else "[reaction removed]"]
    if kind == "template":
        texts = [
            _str(_obj(p).get("text"))
            for c in part.get("components") or ()
            for p in _obj(c).get("parameters") or ()
        ]
        params = ", ".join(t for t in texts if t)
        return [f"[template {_str(part.get('name'))}] {params}".rstrip()]
    if kind == "location":
        where = ", ".join(t for t in (_str(part.get("name")), _str(part.get("address"))) if t)
        return [f"[location] {where} ({part.get('latitude')}, {part.get('longitude')})".strip()]
    if kind == "contacts":
        names = [
            _str(_obj(_obj(c).get("name")).get("formatted_name"))
            for c in message.body.get("contacts") or ()
        ]
        return [f"[contacts] {', '.join(n for n in names if n)}".rstrip()]
    return [f"[{kind}]"]


def render_reply(message: OutboundMessage) -> list[str]:
    """The lines printed for one bot message: `bot> ...`, continuation lines indented, and a
    rejected send (which the user never got) flagged `bot! [rejected CODE: ...]`."""
    lines = _content_lines(message) or [""]
    if message.accepted:
        prefix = BOT
    else:
        prefix = REJECTED
        reason = f"[rejected {message.error_code or '?'}: {message.error_details or 'error'}]"
        lines = [f"{reason} {lines[0]}".rstrip(), *lines[1:]]
    return [prefix + lines[0], *(INDENT + line for line in lines[1:])]
