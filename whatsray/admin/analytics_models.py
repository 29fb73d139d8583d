"""The analytics API's answers (docs/analytics.md): the figures of a time range, per day."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentTurnsOut", "DailyOut", "DayOut", "FiguresOut", "SummaryOut"]


class FiguresOut(BaseModel):
    """The figures of a time range (or a day). Rates are fractions (0..1), null without a
    denominator; times are seconds, null without any."""

    model_config = ConfigDict(extra="forbid")

    conversations: int = Field(description="Conversations (24-hour windows) started.")
    conversations_closed: int = Field(description="Of those, closed by now (24 h idle).")
    handed_off: int = Field(description="Conversations handed to a person.")
    contained: int = Field(description="Closed conversations never handed off.")
    containment_rate: float | None = Field(description="contained / conversations_closed.")
    handoff_rate: float | None = Field(description="handed_off / conversations.")
    human_reply_median_s: float | None = Field(
        description="Median time from a handoff to a person's first message to the user."
    )
    inbound: int = Field(description="Messages from users.")
    outbound: int = Field(description="Messages to users (replies, relays, templates, echoes).")
    turns: int = Field(description="Agent turns.")
    replied_turns: int = Field(description="Turns with a reply to the user (reminders excluded).")
    first_reply_median_s: float | None = Field(description="Median time to a turn's first reply.")
    first_reply_p90_s: float | None = Field(description="90th percentile of the same.")
    faq_turns: int = Field(description="Turns of the knowledge (FAQ) agents.")
    faq_unknown: int = Field(description="Of those, answered with the agent's unknown_reply.")
    faq_unknown_rate: float | None = Field(description="faq_unknown / faq_turns.")
    dead_letters: int = Field(description="Messages the outbox gave up on.")
    template_fallbacks: int = Field(description="Templates sent because the window had closed.")
    windows_unanswered: int = Field(
        description="Windows that closed with the user's last message unanswered (by close)."
    )
    opt_ins: int = Field(description="Greeting subscriptions (`/subscribe`).")
    opt_outs: int = Field(description="Greeting unsubscriptions (`/unsubscribe`).")


class AgentTurnsOut(BaseModel):
    agent: str = Field(description="The agent (`(none)`: no agent recorded).")
    turns: int
    faq_unknown: int = Field(description="Turns answered with the unknown_reply.")
    handoffs: int = Field(description="Turns that handed the chat to a person.")


class SummaryOut(FiguresOut):
    """`GET /api/analytics/summary`: the range's figures with their breakdowns."""

    from_: float = Field(alias="from", description="Start of the range (unix seconds, inclusive).")
    to: float = Field(description="End of the range (unix seconds, exclusive).")
    phone_number_id: str | None = Field(description="The business number; null: all of them.")
    turns_by_agent: list[AgentTurnsOut]
    dead_letters_by_reason: dict[str, int]
    template_fallbacks_by_purpose: dict[str, int] = Field(
        description="By the purpose of the message replaced (`reply`: an agent's reply)."
    )
    opted_in_now: int = Field(description="Contacts opted in to greetings now (not by range).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DayOut(FiguresOut):
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    day_start: float = Field(description="Its start, unix seconds.")


class DailyOut(BaseModel):
    """`GET /api/analytics/daily`: the same figures per UTC day, every day of the range."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: float = Field(alias="from")
    to: float
    phone_number_id: str | None
    days: list[DayOut]
