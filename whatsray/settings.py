"""One settings object for the whole platform, built once at the edge.

Values come from keyword overrides, the environment (prefix `WHATSRAY_`), a `.env` file, or files
in `WHATSRAY_SECRETS_DIR` (one per setting, named like its variable), first found wins.
Secrets are `SecretStr` so they never show in reprs or logs. `load_settings()` turns pydantic's
validation errors into one `SettingsError` whose message names each variable and its problem.

Two modes share this object: `local` (a laptop: the emulator stands in for Meta, secrets are
generated and kept in the data directory) and `cluster` (Meta's Cloud API: every WhatsApp secret
is required).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from whatsray.number_settings import NumberOverrides, NumberSettings, effective, parse_numbers

ENV_PREFIX = "WHATSRAY_"
_GRAPH_VERSION = re.compile(r"^v\d{1,3}\.\d$")
_RAY_GCS_PORT = 6379  # Ray's GCS listens here; the app's Redis must not.
_PHONE_NUMBER = re.compile(r"^\+?[\d\s\-().]+$")


class SettingsError(ValueError):
    """Settings are missing or malformed. The message lists every problem, one per line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    mode: Literal["local", "cluster"] = "local"
    data_dir: Path = Path("data")
    # A directory of secret files (a mounted Kubernetes Secret): each file is named like the
    # variable it sets (`WHATSRAY_APP_SECRET`), its content is the value (docs/settings.md).
    secrets_dir: Path | None = None

    # WhatsApp Cloud API (Meta: App Dashboard > WhatsApp > Configuration; Settings > Basic).
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    access_token: SecretStr | None = None
    phone_number_ids: list[str] = Field(default_factory=list)
    graph_api_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v25.0"
    throughput_mps: int = Field(default=80, ge=1, le=1000)

    # Admin REST API.
    admin_token: SecretStr | None = None

    # Inbox. None in local mode means "start the embedded Valkey".
    redis_url: str | None = None
    partitions: int = Field(default=2, ge=1, le=256)  # one SessionHost actor each

    # Agents: who answers and with which engine (configs/agents.yaml).
    agents_file: Path = Path("configs/agents.yaml")
    # Put every agent on this engine of agents.yaml (e.g. `scripted` for tests and benchmarks).
    engine_override: str | None = None
    agent_pool_size: int = Field(default=1, ge=1, le=64)  # agent worker actors per agent
    session_idle_timeout_s: float = Field(default=3600.0, gt=0)
    # A step of the message path that keeps failing transiently (the store down, a restarting
    # actor) is retried this long per item, then the item is quarantined (docs/errors.md).
    retry_deadline_s: float = Field(default=600.0, gt=0)
    # Who is told when an agent hands a chat to a person (`handoff_to_human`): a WhatsApp number
    # on the business number's side, digits only once read ("+49 151 2345678" -> 491512345678).
    operator_number: str | None = None
    # Human handoff (docs/handoff.md): a chat handed to a person goes back to the bot after this
    # long without a message from the user or the operator; 0 = never.
    handoff_release_after_s: float = Field(default=4 * 3600.0, ge=0)
    # Templates sent instead of free text outside the 24-hour window (docs/outbox.md); unset:
    # none, such messages are dead-lettered `outside_window`.
    templates_file: Path | None = Path("configs/templates.yaml")
    # Per business number: its own throughput and templates over the two above, a JSON object
    # keyed by phone number id (whatsray/number_settings.py, docs/settings.md "Many numbers").
    numbers: Annotated[dict[str, NumberOverrides], NoDecode] = Field(default_factory=dict)

    # Scheduler (docs/scheduler.md): the zone of jobs that name none (an IANA name), the
    # built-in system jobs (cleanup, dead-letter sweep, daily summary), and how often every job
    # is checked for runs a lost timer would have missed.
    default_timezone: str = "UTC"
    system_jobs: bool = True
    scheduler_sweep_s: float = Field(default=30.0, gt=0, le=3600)

    # Local mode: where the built-in emulator listens.
    http_port: int = Field(default=8000, ge=1, le=65535)
    emulator_port: int = Field(default=8025, ge=1, le=65535)
    # Local mode: Ray's metrics export port (the scrape URL in the banner; 8080 as in
    # cluster.yaml) and the port of the Prometheus `whatsray local --prometheus` starts.
    metrics_port: int = Field(default=8080, ge=1, le=65535)
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    # How often each actor sets its gauges again (inbox backlog, sessions, queues): Ray drops a
    # gauge that is not set for about 20 s (docs/metrics.md).
    metrics_interval_s: float = Field(default=5.0, gt=0, le=15)

    # MCP server (`whatsray mcp`): the running whatsray whose REST API it drives; its token is
    # `admin_token` (docs/mcp.md).
    mcp_api_url: str = "http://127.0.0.1:8000"

    # Built-in user-facing jobs (the morning greeting to opted-in contacts, fixed reminders),
    # docs/scheduler.md "Jobs from the configs"; an absent file declares none.
    jobs_file: Path | None = Path("configs/jobs.yaml")

    # Logs of every process (docs/logging.md): JSON lines or text; unset: JSON on a cluster
    # (for a log pipeline), text locally (for a person).
    log_format: Literal["json", "text"] | None = None
    # INFO has a line per message at the ingress, its turn and its send (about 0.3 ms of CPU per
    # message on Ray, docs/logging.md); WARNING drops them; DEBUG adds the status webhooks.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.mode == "cluster" else "text"

    @field_validator("graph_api_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not _GRAPH_VERSION.match(value):
            raise ValueError(f"must look like 'v25.0', got {value!r}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("graph_api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("phone_number_ids")
    @classmethod
    def _check_phone_number_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.isdigit()]
        if bad:
            raise ValueError(f"phone number ids are digits only (Meta's numeric id), got {bad}")
        return value

    @field_validator("numbers", mode="before")
    @classmethod
    def _check_numbers(cls, value: Any, info: ValidationInfo) -> dict[str, NumberOverrides]:
        # phone_number_ids is declared first: absent here only when it failed on its own.
        served = info.data.get("phone_number_ids")
        return parse_numbers(value, served)

    def number_settings(self, phone_number_id: str) -> NumberSettings:
        """The effective settings of one business number: its `numbers` entry over the global
        throughput and templates. An id the app does not serve is a `SettingsError`."""
        if self.phone_number_ids and phone_number_id not in self.phone_number_ids:
            raise SettingsError(
                f"phone number id {phone_number_id[:64]!r} is not served; WHATSRAY_PHONE_NUMBER_IDS"
                f" has {', '.join(self.phone_number_ids)}"
            )
        return effective(
            phone_number_id,
            self.numbers.get(phone_number_id),
            throughput_mps=self.throughput_mps,
            templates_file=self.templates_file,
        )

    @field_validator("operator_number")
    @classmethod
    def _check_operator_number(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _PHONE_NUMBER.match(value.strip()):
            raise ValueError(f"must be a phone number like +491512345678, got {value!r}")
        digits = re.sub(r"\D", "", value)
        if not 6 <= len(digits) <= 15:
            raise ValueError(f"a phone number has 6 to 15 digits, got {len(digits)} in {value!r}")
        return digits

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"must start with redis://, rediss:// or unix://, got {value!r}")
        if parts.scheme != "unix" and (parts.port or _RAY_GCS_PORT) == _RAY_GCS_PORT:
            raise ValueError(
                f"port {_RAY_GCS_PORT} is Ray's GCS port; run the app's Redis on another port"
            )
        return value

    @model_validator(mode="after")
    def _cluster_mode_needs_meta_credentials(self) -> Settings:
        if self.mode != "cluster":
            return self
        required = {
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
            "access_token": self.access_token,
            "admin_token": self.admin_token,
            "phone_number_ids": self.phone_number_ids or None,
            "redis_url": self.redis_url,
        }
        missing = [ENV_PREFIX + name.upper() for name, value in required.items() if value is None]
        if missing:
            raise ValueError("cluster mode requires " + ", ".join(missing))
        return self


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; raise `SettingsError` with every problem spelled out."""
    secrets_dir = _secrets_dir(overrides)
    try:
        return Settings(**overrides, _secrets_dir=secrets_dir)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


class _SecretsDirOnly(BaseSettings):
    """`secrets_dir` alone, read as every setting is: it must be known before the others."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")
    secrets_dir: str | None = None


def _secrets_dir(overrides: dict[str, Any]) -> Path | None:
    # A keyword override wins, as for every setting; else the environment or the .env file.
    value = (
        overrides["secrets_dir"] if "secrets_dir" in overrides else _SecretsDirOnly().secrets_dir
    )
    if value is None or not str(value).strip():
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "no such directory"
        name = ENV_PREFIX + "SECRETS_DIR"
        raise SettingsError(f"invalid whatsray settings:\n  {name}: {problem}: {path}")
    return path


def _describe(exc: ValidationError) -> str:
    lines = ["invalid whatsray settings:"]
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        name = ENV_PREFIX + location[0].upper() if location else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)


class LocalSecrets:
    """Secrets for local mode: generated once, kept in the data directory, never hard-coded.

    A later start reads the same values back, so webhooks signed by a running emulator and tokens a
    user copied keep working across restarts.
    """

    NAMES = ("app_secret", "verify_token", "access_token", "admin_token")

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "local-secrets.env"

    def load_or_create(self) -> dict[str, str]:
        values = self._read()
        missing = [name for name in self.NAMES if name not in values]
        if missing:
            for name in missing:
                values[name] = secrets.token_urlsafe(24)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = "".join(f"{ENV_PREFIX}{n.upper()}={values[n]}\n" for n in self.NAMES)
            self.path.write_text(body)
            self.path.chmod(0o600)
        return values

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        values = {}
        for line in self.path.read_text().splitlines():
            key, sep, value = line.partition("=")
            name = key.strip().removeprefix(ENV_PREFIX).lower()
            if sep and name in self.NAMES and value.strip():
                values[name] = value.strip()
        return values


def resolve_local_secrets(settings: Settings) -> Settings:
    """Fill unset secrets of local mode from the data directory (generating them the first time)."""
    if settings.mode != "local":
        return settings
    stored = LocalSecrets(settings.data_dir).load_or_create()
    updates = {
        name: SecretStr(stored[name])
        for name in LocalSecrets.NAMES
        if getattr(settings, name) is None
    }
    return settings.model_copy(update=updates)
