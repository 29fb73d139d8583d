"""Emulator configuration: one frozen value, built once (by tests, the CLI or the local mode)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_DISPLAY_NUMBER = "15550783881"
DEFAULT_WABA_ID = "102290129340398"
DEFAULT_PORT = 8025


class BusinessNumber(BaseModel):
    """One registered business phone number the emulator serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = DEFAULT_PHONE_NUMBER_ID
    display_phone_number: str = DEFAULT_DISPLAY_NUMBER
    waba_id: str = DEFAULT_WABA_ID
    verified_name: str = "whatsray emulator"
    # This number's own throughput tier (Meta sets it per number); None: the config's.
    throughput_mps: float | None = Field(default=None, gt=0)

    @classmethod
    def parse(cls, spec: str, *, throughput_mps: float | None = None) -> BusinessNumber:
        """`ID`, `ID:DISPLAY_NUMBER` or `ID:DISPLAY_NUMBER:MPS` (the CLI form; `ID::MPS` keeps
        the derived display number). Without a display number, one is derived."""
        number_id, _, rest = spec.partition(":")
        display, _, mps = rest.partition(":")
        number_id = number_id.strip()
        if not number_id.isdigit():
            raise ValueError(f"phone number id must be digits, got {number_id!r}")
        if mps.strip():
            try:
                throughput_mps = float(mps)
            except ValueError:
                raise ValueError(
                    f"throughput of {number_id} must be messages per second, got {mps!r}"
                ) from None
        digits = "".join(ch for ch in display if ch.isdigit())
        return cls(
            id=number_id,
            display_phone_number=digits or "1555" + number_id[-7:],
            throughput_mps=throughput_mps,
        )


class StatusDelays(BaseModel):
    """Seconds after an accepted send at which each status webhook happens; None = never."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sent: float | None = Field(default=0.05, ge=0)
    delivered: float | None = Field(default=0.3, ge=0)
    read: float | None = Field(default=1.0, ge=0)


class EmulatorConfig(BaseModel):
    """How the emulator behaves; the defaults follow Meta's documented limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_secret: str = Field(default="emulator-app-secret", min_length=1)
    access_token: str = Field(default="emulator-access-token", min_length=1)
    phone_numbers: tuple[BusinessNumber, ...] = Field(default=(BusinessNumber(),), min_length=1)
    webhook_url: str | None = None
    # Base URL written into media download links; None = the URL the request came in on.
    public_url: str | None = None

    # Limits (reference section 7). `throughput_mps` is every number's unless it has its own.
    throughput_mps: float = Field(default=80.0, gt=0)
    pair_burst: int = Field(default=45, ge=1)
    pair_refill_seconds: float = Field(default=6.0, gt=0)
    window_enforcement: bool = True
    window_seconds: float = Field(default=24 * 3600, gt=0)
    window_failure_mode: Literal["sync", "async"] = "sync"
    # Template names that exist; empty = any name is accepted.
    known_templates: tuple[str, ...] = ()

    # Status webhooks.
    status_delays: StatusDelays = StatusDelays()
    duplicate_probability: float = Field(default=0.0, ge=0, le=1)
    out_of_order_probability: float = Field(default=0.0, ge=0, le=1)

    # Webhook delivery: attempt n failed -> retry after min(base * 2**(n-1), max).
    delivery_max_attempts: int = Field(default=8, ge=1)
    delivery_backoff_base_s: float = Field(default=1.0, ge=0)
    delivery_backoff_max_s: float = Field(default=60.0, ge=0)
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    delivery_concurrency: int = Field(default=8, ge=1)
    # Status batching, as Meta does: statuses that come due within this window (real time,
    # from the first) go to the webhook URL in one body, at most `status_batch_max` of them.
    # 0 = one status per POST. Inbound messages are never held back.
    status_batch_window_s: float = Field(default=0.025, ge=0, le=5)
    status_batch_max: int = Field(default=50, ge=1, le=1000)

    media_url_ttl_s: float = Field(default=300.0, gt=0)
    max_log_entries: int = Field(default=100_000, ge=1)
    # Seeds the behaviour randomness (fault error rate, duplicates, reordering); ids stay unique.
    seed: int | None = 0

    @field_validator("phone_numbers", mode="before")
    @classmethod
    def _numbers_from_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            return tuple(BusinessNumber.parse(v) if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="after")
    def _unique_numbers(self) -> EmulatorConfig:
        ids = [n.id for n in self.phone_numbers]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate phone number ids: {ids}")
        return self

    @property
    def phone_number_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.phone_numbers)

    def number(self, phone_number_id: str) -> BusinessNumber | None:
        for number in self.phone_numbers:
            if number.id == phone_number_id:
                return number
        return None

    def throughput_of(self, phone_number_id: str) -> float:
        """The messages per second this number may send (its own tier, else the config's)."""
        number = self.number(phone_number_id)
        own = number.throughput_mps if number is not None else None
        return own if own is not None else self.throughput_mps

    def backoff(self, attempt: int) -> float:
        """Delay before the retry that follows failed attempt `attempt` (1-based)."""
        delay = self.delivery_backoff_base_s * 2 ** (attempt - 1)
        return float(min(delay, self.delivery_backoff_max_s))
