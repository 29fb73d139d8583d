"""The MCP server: whatsray's REST API as eleven tools for AI clients (docs/mcp.md).

Built on the official SDK's `MCPServer`. Each tool is one call of `WhatsrayApi`: the server adds
no rules of its own and bypasses none. Whatever the API refuses (401/403 auth, 404, 409 outside
the 24-hour window, 422 validation, 429 rate limits) comes back to the client as a tool error
(`is_error`) with the API's own message and a hint on what to do about it, and changes nothing.

The cronjob tools pass their arguments to the jobs API as JSON (`trigger` and `options` as they
are), so the tool arguments do not have to track every field of the job body.

Arguments are checked before anything is sent: an argument the tool does not take, one missing,
or one of the wrong type is a tool error naming the argument and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError

from whatsray import __version__
from whatsray.mcp.api import ApiError, ApiUnreachable, JsonObject, WhatsrayApi

__all__ = ["TOOL_NAMES", "build_server", "tool_error"]

TOOL_NAMES = (
    "whatsapp_send_message",
    "whatsapp_get_messages",
    "whatsapp_get_chats",
    "whatsapp_search_contacts",
    "cronjob_create",
    "cronjob_list",
    "cronjob_get",
    "cronjob_update",
    "cronjob_delete",
    "cronjob_start",
    "cronjob_stop",
)

INSTRUCTIONS = """\
whatsray runs WhatsApp bots for a business. These tools act as the business through whatsray's
REST API: read chats and contacts, send text messages, and schedule jobs (reminders).
WhatsApp's 24-hour rule: free text reaches a user only within 24 hours after the user's last
message (whatsapp_get_chats shows window_open). Outside it whatsapp_send_message fails with
409 outside_window and nothing is sent: do not retry; the user has to write first.
A tool error quotes whatsray's answer (HTTP status, error code, message); nothing was changed."""

_NOT_SERVED = "This deployment does not send from that business number."
# What each error code or status means for the caller, appended to the API's own message
# (looked up by the field's type of an invalid request first, then by the error code).
_BY_ERROR = {
    "outside_window": (
        "Nothing was sent. Do not retry: WhatsApp accepts free text only within 24 hours of"
        " the user's last message, so wait until the user writes again."
    ),
    "idempotency_conflict": (
        "Nothing was sent. Use a new idempotency_key for a different message, or the same"
        " key with the same text and user to get the first message back."
    ),
    "number_not_configured": _NOT_SERVED,
    # An unknown phone_number_id (a 422 whose field type says so): the same advice.
    "unknown_phone_number_id": _NOT_SERVED
    + " Leave phone_number_id out for the default number, or use one the message lists.",
}
_BY_STATUS = {
    401: (
        "This MCP server has no valid admin token for whatsray; its operator must set"
        " WHATSRAY_ADMIN_TOKEN (or --token). Retrying will not help."
    ),
    403: (
        "This MCP server's admin token is not whatsray's; its operator must fix"
        " WHATSRAY_ADMIN_TOKEN (or --token). Retrying will not help."
    ),
    404: "It does not exist: list or search first to get a valid id or chat.",
    405: "This whatsray does not serve that operation (an older version?).",
    422: "Nothing was changed. Fix the argument named above and call again.",
}

TRIGGER_EXAMPLES = (
    '{"type": "cron", "expression": "0 9 * * 1-5"} (9:00 on weekdays),'
    ' {"type": "interval", "seconds": 3600} (every hour),'
    ' {"type": "date", "run_at": "2026-03-01T09:00:00"} (once)'
)


def tool_error(exc: ApiError | ApiUnreachable | ValueError) -> ToolError:
    """The tool error an MCP client sees for a refused or failed API call."""
    if isinstance(exc, ApiUnreachable):
        return ToolError(f"{exc} Nothing was done; try again once whatsray is reachable.")
    if isinstance(exc, ValueError):
        return ToolError(f"invalid arguments: {exc}. Nothing was sent to whatsray.")
    by_error = _BY_ERROR.get(exc.reason or "") or _BY_ERROR.get(exc.error)
    hint = by_error or _BY_STATUS.get(exc.status, "")
    if exc.status == 429:
        wait = f" {exc.retry_after} s" if exc.retry_after else " a while"
        hint = f"Rate limited: nothing was done; wait{wait} and try again."
    elif exc.status >= 500 and not hint:
        hint = "whatsray failed on its side; try again later."
    head = f"whatsray answered HTTP {exc.status} {exc.error} to {exc.method} {exc.path}"
    return ToolError(f"{head}: {exc.message}" + (f" -- {hint}" if hint else ""))


async def _call(pending: Awaitable[JsonObject]) -> JsonObject:
    try:
        return await pending
    except (ApiError, ApiUnreachable, ValueError) as exc:
        raise tool_error(exc) from None


def _payload(payload: str | dict[str, Any]) -> JsonObject:
    """A reminder's text as the jobs API's payload object; an object passes as it is."""
    return {"text": payload} if isinstance(payload, str) else payload


# -- argument types (the JSON schema an MCP client sees) -------------------------------------

User = Annotated[
    str,
    Field(
        description="The user: a phone number in international format, any punctuation"
        " ('+1 555 123 4567', '15551234567'), or a BSUID ('US.13491208655302741918')."
        " whatsapp_search_contacts and whatsapp_get_chats find it."
    ),
]
Chat = Annotated[
    str,
    Field(
        description="The chat: its key 'phone_number_id:user' as whatsapp_get_chats or"
        " whatsapp_search_contacts return it, or just the user's phone number or BSUID"
        " (on the default business number)."
    ),
]
JobId = Annotated[str, Field(description="The job's id, as cronjob_create or cronjob_list give.")]
SendingNumber = Annotated[
    str | None,
    Field(
        description="The business number to send from: its phone number id, as a chat key"
        " starts with it ('106540352242922'). Default: the deployment's first number."
    ),
]
NumberFilter = Annotated[
    str | None,
    Field(
        description="Only this business number's (its phone number id, as a chat key starts"
        " with it). Default: every number's."
    ),
]
Payload = Annotated[
    str | dict[str, Any],
    Field(
        description="What the job is about. For a reminder, the text the bot reminds the user"
        " of ('call mom'): the bot composes the message from it when the job fires. A string"
        ' is sent as {"text": ...}; an object is sent as it is.'
    ),
]
Trigger = Annotated[
    dict[str, Any],
    Field(
        description="When the job fires: a 5-field cron expression, an interval in seconds,"
        f" or one date and time. Passed to the jobs API as is, e.g. {TRIGGER_EXAMPLES}."
    ),
]
Timezone = Annotated[
    str | None,
    Field(
        description="The IANA time zone the trigger is read in ('Europe/Berlin');"
        " default: the deployment's."
    ),
]
Options = Annotated[
    dict[str, Any] | None,
    Field(
        description="Other fields of the jobs API's job, passed through as they are, e.g."
        ' {"quiet_hours": {"start": "22:00", "end": "08:00"}, "enabled": false}.'
    ),
]


class _Tools:
    """The tool functions, bound to one API client."""

    def __init__(self, api: WhatsrayApi) -> None:
        self.api = api

    async def send_message(
        self,
        to: User,
        text: Annotated[str, Field(description="The message text, 1 to 4096 characters.")],
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Optional, recommended when you may retry: 1 to 128 printable"
                " ASCII characters without spaces, one per message ('order-1234-shipped')."
                " The same key again returns the first call's message and sends nothing."
            ),
        ] = None,
        phone_number_id: SendingNumber = None,
    ) -> JsonObject:
        return await _call(self.api.send_message(to, text, idempotency_key, phone_number_id))

    async def get_messages(
        self,
        chat: Chat,
        limit: Annotated[int, Field(description="Messages per page, 1 to 500.")] = 50,
        before: Annotated[
            int | None,
            Field(description="For older messages: the next_before of the previous page."),
        ] = None,
    ) -> JsonObject:
        return await _call(self.api.get_messages(chat, limit, before))

    async def get_chats(
        self,
        limit: Annotated[int, Field(description="Chats per page, 1 to 500.")] = 50,
        offset: Annotated[
            int, Field(description="Where the page starts: the next_offset of the previous page.")
        ] = 0,
        phone_number_id: NumberFilter = None,
    ) -> JsonObject:
        return await _call(self.api.list_chats(limit, offset, phone_number_id))

    async def search_contacts(
        self,
        q: Annotated[
            str,
            Field(
                description="Part of a name, phone number (any format), BSUID or chat key;"
                " 1 to 100 characters, case does not matter."
            ),
        ],
        limit: Annotated[int, Field(description="At most this many contacts, 1 to 100.")] = 20,
        phone_number_id: NumberFilter = None,
    ) -> JsonObject:
        return await _call(self.api.search_contacts(q, limit, phone_number_id))

    async def cronjob_create(
        self,
        name: Annotated[str, Field(description="A short name for the job ('call mom').")],
        chat: Chat,
        payload: Payload,
        trigger: Trigger,
        timezone: Timezone = None,
        options: Options = None,
    ) -> JsonObject:
        fields: JsonObject = {
            "name": name,
            "kind": "reminder",
            "chat": chat,
            "payload": _payload(payload),
            "trigger": trigger,
        }
        if timezone is not None:
            fields["timezone"] = timezone
        return await _call(self._with_options(fields, options, self.api.create_job))

    async def cronjob_list(
        self,
        chat: Annotated[str | None, Field(description="Only this chat's jobs.")] = None,
        kind: Annotated[
            str | None,
            Field(description="Only jobs of this kind: 'reminder', or 'system' (housekeeping)."),
        ] = None,
    ) -> JsonObject:
        given = {"chat": chat, "kind": kind}
        params = {key: value for key, value in given.items() if value is not None}
        return await _call(self.api.list_jobs(params))

    async def cronjob_get(self, job_id: JobId) -> JsonObject:
        return await _call(self.api.get_job(job_id))

    async def cronjob_update(
        self,
        job_id: JobId,
        name: Annotated[str | None, Field(description="A new name.")] = None,
        payload: Annotated[
            str | dict[str, Any] | None,
            Field(description="A new payload: the reminder text, or the whole object."),
        ] = None,
        trigger: Annotated[
            dict[str, Any] | None,
            Field(description=f"A new trigger (reschedules the job), e.g. {TRIGGER_EXAMPLES}."),
        ] = None,
        timezone: Timezone = None,
        options: Options = None,
    ) -> JsonObject:
        given = {
            "name": name,
            "payload": None if payload is None else _payload(payload),
            "trigger": trigger,
            "timezone": timezone,
        }
        fields = {key: value for key, value in given.items() if value is not None}
        if not fields and not options:
            raise ToolError("nothing to update: pass at least one field to change")
        return await _call(
            self._with_options(fields, options, lambda body: self.api.update_job(job_id, body))
        )

    async def cronjob_delete(self, job_id: JobId) -> JsonObject:
        answer = await _call(self.api.delete_job(job_id))
        return answer or {"id": job_id, "deleted": True}  # a 204 has no body

    async def cronjob_start(self, job_id: JobId) -> JsonObject:
        return await _call(self.api.start_job(job_id))

    async def cronjob_stop(self, job_id: JobId) -> JsonObject:
        return await _call(self.api.stop_job(job_id))

    @staticmethod
    async def _with_options(
        fields: JsonObject,
        options: JsonObject | None,
        send: Callable[[JsonObject], Awaitable[JsonObject]],
    ) -> JsonObject:
        """`fields` plus the pass-through `options`, refusing an option that repeats a field."""
        repeated = sorted(set(fields) & set(options or {}))
        if repeated:
            raise ValueError(
                f"options repeat {', '.join(repeated)}: pass those as their own arguments"
            )
        body: JsonObject = {**(options or {}), **fields}
        return await send(body)


# -- descriptions (written for the model that picks the tool) --------------------------------

_ERRORS = (
    " Errors come back as tool errors quoting whatsray: 422 names the bad argument, 401/403"
    " mean this MCP server's token is wrong (retrying will not help), 429 means rate limited"
    " (wait, then retry)."
)

DESCRIPTIONS = {
    "whatsapp_send_message": (
        "Send a WhatsApp text message to a user, as the business. Allowed only inside the"
        " user's 24-hour customer service window: the user must have written to the business"
        " within the last 24 hours (whatsapp_get_chats shows window_open). Outside it the call"
        " fails with 409 outside_window and nothing is sent; do not retry, the user has to"
        " write first. Success means the message is recorded and queued (status 'pending',"
        " created true); it goes out in the background, in order with the bot's replies."
        " Follow its status (sent, delivered, read, or dead) with whatsapp_get_messages."
        " Pass an idempotency_key whenever you might retry: the same key returns the first"
        " message (created false) instead of sending twice; the key with another text or user"
        " is a 409 idempotency_conflict. A deployment with several business numbers sends from"
        " the first unless phone_number_id names another; reply to a chat from the number its"
        " key starts with." + _ERRORS
    ),
    "whatsapp_get_messages": (
        "Read one chat's messages, both directions, oldest first, a page at a time starting"
        " with the newest page. Each message has direction ('in' from the user, 'out' from the"
        " business), type, text, created_at (Unix seconds) and, for outbound messages, status"
        " (pending, sent, delivered, read, dead). For older messages call again with before ="
        " next_before; next_before null means there are none. 404: no such chat." + _ERRORS
    ),
    "whatsapp_get_chats": (
        "List chats, most recently active first. Each has chat (its key for the other tools),"
        " user, last_inbound_at (when the user last wrote, Unix seconds), window_open (whether"
        " whatsapp_send_message would be accepted now) and handoff (a human operator has taken"
        " the chat over). For the next page pass offset = next_offset; next_offset null means"
        " this is the last page." + _ERRORS
    ),
    "whatsapp_search_contacts": (
        "Find contacts whose name, phone number (any format), BSUID or chat key contains q,"
        " ignoring case; most recently seen first. Each has chat, phone, bsuid, profile_name"
        " and last_seen. Use it to turn a name into the user or chat the other tools take."
        + _ERRORS
    ),
    "cronjob_create": (
        "Schedule a reminder in whatsray's scheduler: each time it fires, the bot writes to the"
        " chat about payload (the bot's agent composes the message; outside the user's 24-hour"
        " window only an approved template can reach the user, so such a run may not be"
        " delivered as free text). trigger says when: a cron expression, an interval, or one"
        " date, read in timezone. Answers with the job, including its id and next_run_at."
        " 422 names what is wrong (cron expression, time zone, date, payload); nothing is"
        " scheduled then." + _ERRORS
    ),
    "cronjob_list": (
        "List scheduled jobs with their ids, triggers, whether they are enabled (running) or"
        " stopped, and their next run (next_run_at); optionally only one chat's or one kind."
        + _ERRORS
    ),
    "cronjob_get": (
        "Show one job as whatsray has it: its name, chat, payload, trigger, time zone, whether"
        " it is enabled, and its next run (next_run_at). 404: no such job." + _ERRORS
    ),
    "cronjob_update": (
        "Change a job; only the fields you pass change (a job's chat and kind never change:"
        " create a new job instead). A new trigger reschedules it. 404: no such job; 422 names"
        " an invalid field, and then nothing changes." + _ERRORS
    ),
    "cronjob_delete": (
        "Delete a job for good: it never fires again. To pause a job instead, use"
        " cronjob_stop. 404: no such job." + _ERRORS
    ),
    "cronjob_start": (
        "Resume a stopped job: it fires again from its next scheduled time. 404: no such job."
        + _ERRORS
    ),
    "cronjob_stop": (
        "Pause a job without deleting it: it does not fire until cronjob_start. 404: no such"
        " job." + _ERRORS
    ),
}

_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_TOGGLE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ANNOTATIONS = {
    # It messages a real person, who sees it: not undoable, outside this system.
    "whatsapp_send_message": ToolAnnotations(
        title="Send a WhatsApp message",
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=False,
        open_world_hint=True,
    ),
    "whatsapp_get_messages": _READ,
    "whatsapp_get_chats": _READ,
    "whatsapp_search_contacts": _READ,
    "cronjob_create": _WRITE,
    "cronjob_list": _READ,
    "cronjob_get": _READ,
    "cronjob_update": _TOGGLE,
    "cronjob_delete": ToolAnnotations(
        read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
    ),
    "cronjob_start": _TOGGLE,
    "cronjob_stop": _TOGGLE,
}


_JSON_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list": "an array",
    "dict": "an object",
    "NoneType": "null",
}


def _arguments_error(tool: str, problems: list[str]) -> ToolError:
    return ToolError(
        f"invalid arguments for {tool}: {'; '.join(problems)}. Nothing was sent to whatsray;"
        " fix the arguments and call again."
    )


def _validation_problems(exc: ValidationError) -> list[str]:
    """One sentence per argument: which one, and what is wrong with it (every alternative of a
    union, e.g. payload: a string or an object)."""
    by_argument: dict[str, list[str]] = {}
    for error in exc.errors():
        argument = str(error["loc"][0]) if error["loc"] else "arguments"
        if error["type"] == "missing":
            message = "is required"
        else:
            got = _JSON_TYPES.get(type(error["input"]).__name__, type(error["input"]).__name__)
            message = f"{error['msg'].removeprefix('Input ')} (got {got})"
        if message not in by_argument.setdefault(argument, []):
            by_argument[argument].append(message)
    return [f"argument '{name}' {' or '.join(m)}" for name, m in by_argument.items()]


class _Server(MCPServer[Any]):
    """The SDK's server, stricter about arguments: one the tool does not take is refused (the
    SDK would drop it silently), a boolean is not an integer, and a validation error names each
    argument and what is wrong with it, without the SDK's internal model names."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        schemas = {tool.name: tool.input_schema for tool in await self.list_tools()}
        properties: dict[str, Any] = schemas.get(name, {}).get("properties", {})
        if name in schemas:
            problems = [
                f"unknown argument {key[:64]!r} (it takes {', '.join(properties) or 'none'})"
                for key in arguments
                if key not in properties
            ]
            if problems:  # the SDK will not be asked: say what else is wrong too
                required = schemas[name].get("required", [])
                problems += [
                    f"argument '{key}' is required" for key in required if key not in arguments
                ]
            problems += [
                f"argument '{key}' should be an integer (got a boolean)"
                for key, value in arguments.items()
                if isinstance(value, bool)
                and _allows_integer(properties.get(key, {}))
                and not _allows(properties.get(key, {}), "boolean")
            ]
            if problems:
                raise _arguments_error(name, problems)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            # The SDK's own argument check (a crash inside a tool is an UnexpectedToolError).
            if isinstance(exc.__cause__, ValidationError) and not isinstance(
                exc, UnexpectedToolError
            ):
                cause = exc.__cause__
                raise _arguments_error(name, _validation_problems(cause)) from cause
            raise


def _allows(schema: dict[str, Any], json_type: str) -> bool:
    alternatives = schema.get("anyOf", [schema])
    return any(alternative.get("type") == json_type for alternative in alternatives)


def _allows_integer(schema: dict[str, Any]) -> bool:
    return _allows(schema, "integer") or _allows(schema, "number")


def build_server(api: WhatsrayApi, *, name: str = "whatsray") -> MCPServer[Any]:
    """An `MCPServer` whose tools call `api`; run it with any of the SDK's transports."""
    server: MCPServer[Any] = _Server(
        name, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    tools = _Tools(api)
    functions: dict[str, Callable[..., Awaitable[JsonObject]]] = {
        "whatsapp_send_message": tools.send_message,
        "whatsapp_get_messages": tools.get_messages,
        "whatsapp_get_chats": tools.get_chats,
        "whatsapp_search_contacts": tools.search_contacts,
        "cronjob_create": tools.cronjob_create,
        "cronjob_list": tools.cronjob_list,
        "cronjob_get": tools.cronjob_get,
        "cronjob_update": tools.cronjob_update,
        "cronjob_delete": tools.cronjob_delete,
        "cronjob_start": tools.cronjob_start,
        "cronjob_stop": tools.cronjob_stop,
    }
    for tool in TOOL_NAMES:
        server.add_tool(
            functions[tool],
            name=tool,
            description=DESCRIPTIONS[tool],
            annotations=ANNOTATIONS[tool],
            structured_output=True,
        )
    return server
