"""A faithful WhatsApp Cloud API emulator: Meta's Graph API side plus signed webhooks.

See docs/emulator.md. The public surface: `EmulatorConfig`, `Emulator`, `create_emulator_app`,
`run_emulator`, the clocks, and the payload helpers tests use.
"""

from __future__ import annotations

from whatsray.whatsapp.emulator.app import create_emulator_app, run_emulator
from whatsray.whatsapp.emulator.clock import AdvanceableClock, Clock, FakeClock, SystemClock
from whatsray.whatsapp.emulator.config import (
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_PORT,
    BusinessNumber,
    EmulatorConfig,
    StatusDelays,
)
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.emulator.webhook_payloads import encode_webhook_body

__all__ = [
    "DEFAULT_PHONE_NUMBER_ID",
    "DEFAULT_PORT",
    "AdvanceableClock",
    "BusinessNumber",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "FakeClock",
    "StatusDelays",
    "SystemClock",
    "create_emulator_app",
    "encode_webhook_body",
    "run_emulator",
]
