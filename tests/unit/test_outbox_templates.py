"""Templates outside the 24-hour window: the loader's validation, and the outbox's fallback against
the real emulator (in-process, fake clock) in both of its window modes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from emulator_harness import OTHER_USER, USER
from outbox_harness import OutboxRig, outbox_rig

from tests.support.metrics import MetricsProbe
from whatsray.outbox import (
    TemplatesConfig,
    TemplatesConfigError,
    describe_window,
    load_templates,
    parse_templates,
    template_outbound_id,
)
from whatsray.whatsapp.events import StatusEvent
from whatsray.whatsapp.parsing import parse_webhook

TEMPLATES = parse_templates(
    {
        "templates": {
            "default": {"name": "generic_notice", "language": "en_US", "body": ["{text}"]},
            "reminder": {
                "name": "reminder_v1",
                "language": "en_US",
                "header": ["Reminder"],
                "body": ["{text}", "for {user}"],
            },
            "dead_letter_replay": {"name": "we_tried", "language": "en", "body": ["{text}"]},
        }
    }
)
ONLY_REMINDERS = parse_templates(
    {"templates": {"reminder": {"name": "reminder_v1", "language": "en_US", "body": ["{text}"]}}}
)


def statuses(rig: OutboxRig) -> list[StatusEvent]:
    """Every status webhook the receiver accepted, parsed."""
    return [
        event
        for delivery in rig.receiver.deliveries
        for event in parse_webhook(delivery.body)
        if isinstance(event, StatusEvent)
    ]


def body_params(record_body: dict[str, object]) -> list[str]:
    template = record_body["template"]
    assert isinstance(template, dict)
    [body] = [c for c in template["components"] if c["type"] == "body"]
    return [p["text"] for p in body["parameters"]]


# --- the loader -------------------------------------------------------------------------------


def test_the_shipped_templates_file_loads() -> None:
    config = load_templates(Path(__file__).resolve().parents[2] / "configs" / "templates.yaml")
    assert config.for_purpose(None) is not None
    assert config.for_purpose("handoff_notice") is not None


def test_a_purpose_falls_back_to_the_default_template_and_none_means_none() -> None:
    assert TEMPLATES.for_purpose("reminder").name == "reminder_v1"  # type: ignore[union-attr]
    assert TEMPLATES.for_purpose("greeting").name == "generic_notice"  # type: ignore[union-attr]
    assert TEMPLATES.for_purpose(None).name == "generic_notice"  # type: ignore[union-attr]
    assert ONLY_REMINDERS.for_purpose(None) is None
    assert TemplatesConfig({}).for_purpose("reminder") is None
    assert len(load_templates(None)) == 0


def test_every_problem_is_named_at_load() -> None:
    document = {
        "templates": {
            "reminders": {"name": "x", "language": "en"},
            "default": {"name": "Bad Name", "language": "en_US", "body": ["{txt}"]},
            "greeting": {"name": "ok", "language": "en", "colour": "red"},
            "reply": "just a name",
        }
    }
    with pytest.raises(TemplatesConfigError) as caught:
        parse_templates(document, "configs/templates.yaml")
    message = str(caught.value)
    assert message.startswith("configs/templates.yaml: 5 problems:")
    assert "unknown purpose 'reminders'" in message
    assert "purpose 'default', field 'name'" in message
    assert "unknown placeholder {txt}" in message
    assert "purpose 'greeting', field 'colour'" in message
    assert "purpose 'reply': must be a mapping" in message


def test_a_bad_document_or_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplatesConfigError, match="one key, 'templates'"):
        parse_templates({"template": {}})
    with pytest.raises(TemplatesConfigError, match="cannot read it"):
        load_templates(tmp_path / "nope.yaml")
    broken = tmp_path / "t.yaml"
    broken.write_text("templates: [unclosed")
    with pytest.raises(TemplatesConfigError, match="cannot read it"):
        load_templates(broken)


def test_parameters_are_filled_flattened_and_cut() -> None:
    spec = TEMPLATES.for_purpose("reminder")
    assert spec is not None
    body = spec.graph_body("+15551234567", "call\nmom   at 9" + "x" * 2000)
    [header, main] = body["template"]["components"]
    assert header == {"type": "header", "parameters": [{"type": "text", "text": "Reminder"}]}
    text, user = (p["text"] for p in main["parameters"])
    assert text.startswith("call mom at 9x") and len(text) == 1024 and text.endswith("…")
    assert user == "for +15551234567"


def test_the_window_line_for_agents() -> None:
    now = 1_000_000.0
    assert describe_window(now - 3600 * 20 - 60 * 48, now) == (
        "The user's 24-hour WhatsApp window closes in 3 h 12 min."
    )
    assert describe_window(now - 24 * 3600 + 30, now).endswith("closes in 1 min.")
    closed = describe_window(now - 25 * 3600, now)
    assert "is closed" in closed and "only approved templates" in closed
    assert describe_window(None, now) == closed


# --- the outbox -------------------------------------------------------------------------------


async def test_sync_our_check_sends_the_purposes_template_instead_once(
    recorded: MetricsProbe,
) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER, age_s=25 * 3600)
        outbox = rig.outbox(templates=TEMPLATES)
        item = replace(rig.item("job1:0", "call mom", USER), purpose="reminder")
        [record] = await outbox.submit([item])

        assert record.outbound_id == template_outbound_id("job1:0") == "job1:0:template"
        assert record.wamid is not None and record.purpose == "reminder"
        [sent] = rig.accepted(USER)
        assert sent.body["template"]["name"] == "reminder_v1"
        assert body_params(sent.body) == ["call mom", f"for {USER}"]
        assert sent.body["biz_opaque_callback_data"] == "job1:0:template"
        original = await rig.ledger.get_outbound("job1:0")
        assert original is not None and original.status == "failed"
        assert original.last_error is not None and "job1:0:template" in original.last_error
        assert rig.rejected_codes() == []  # the free text never reached Meta
        assert rig.ledger.dead_letters == {}
        # Submitting the message again sends nothing more.
        await outbox.submit([item])
        await outbox.resume_pending()
        await rig.settle()
        assert len(rig.accepted(USER)) == 1
        fallbacks = {"purpose": "reminder", "reason": "window_closed"}
        assert recorded.value("whatsray_template_fallbacks_total", **fallbacks) == 1


async def test_sync_meta_refusal_falls_back_too() -> None:
    # No window lookup: Meta (the emulator, sync mode) answers 131047 to the send itself.
    async with outbox_rig() as rig:
        outbox = rig.outbox(window_lookup=None, templates=TEMPLATES)
        [record] = await outbox.submit(rig.reply("t1", USER, "are you there?"))

        assert record.outbound_id == "t1:0:template" and record.wamid is not None
        assert rig.rejected_codes() == [131047]
        assert [r.body["template"]["name"] for r in rig.accepted(USER)] == ["generic_notice"]
        assert body_params(rig.accepted(USER)[0].body) == ["are you there?"]


async def test_async_failed_131047_sends_the_template_once(recorded: MetricsProbe) -> None:
    async with outbox_rig(window_failure_mode="async") as rig:
        outbox = rig.outbox(window_lookup=None, templates=TEMPLATES)
        [record] = await outbox.submit(rig.reply("t1", USER, "too late"))
        assert record.status == "sent"  # accepted; the failure comes as a status webhook
        await rig.harness.advance(3)
        await outbox.wait_idle()  # the template goes out in the background
        [text, template] = rig.accepted(USER)
        assert text.body["type"] == "text"
        assert template.body["template"]["name"] == "generic_notice"
        assert body_params(template.body) == ["too late"]
        fallback = await rig.ledger.get_outbound("t1:0:template")
        assert fallback is not None and fallback.status in {"sent", "delivered", "read"}
        original = await rig.ledger.get_outbound("t1:0")
        assert original is not None and original.status == "failed"
        assert rig.ledger.dead_letters == {}

        # The failed status delivered again (Meta retries webhooks): no second template.
        [failed] = [e for e in statuses(rig) if e.status.value == "failed"]
        await outbox.apply_status(failed)
        await outbox.apply_status(failed)
        await outbox.wait_idle()
        assert len(rig.accepted(USER)) == 2
        fallbacks = {"reason": "late_131047"}
        assert recorded.value("whatsray_template_fallbacks_total", **fallbacks) == 1


async def test_async_failed_131047_without_a_template_is_a_dead_letter() -> None:
    async with outbox_rig(window_failure_mode="async") as rig:
        outbox = rig.outbox(window_lookup=None, templates=ONLY_REMINDERS)  # no default
        await outbox.submit(rig.reply("t1", USER, "too late"))
        await rig.harness.advance(3)

        [letter] = rig.ledger.dead_letters.values()
        assert (letter.reason, letter.error_code) == ("outside_window", 131047)
        assert [r.body["type"] for r in rig.accepted(USER)] == ["text"]


async def test_no_template_for_the_purpose_dead_letters_without_reaching_meta() -> None:
    async with outbox_rig() as rig:
        outbox = rig.outbox(templates=ONLY_REMINDERS)
        [record] = await outbox.submit(rig.reply("t1", OTHER_USER, "hello?"))

        assert record.status == "dead"
        assert rig.harness.emulator.requests() == []
        [letter] = rig.ledger.dead_letters.values()
        assert letter.reason == "outside_window"


async def test_a_replayed_dead_letter_outside_the_window_goes_as_the_replay_template() -> None:
    async with outbox_rig() as rig:
        [dead] = await rig.outbox().submit(rig.reply("t1", USER, "your receipt"))  # no templates
        [letter_id] = rig.ledger.dead_letters
        assert dead.status == "dead"
        outbox = rig.outbox(templates=TEMPLATES)
        record = await outbox.replay_dead_letter(letter_id)
        again = await outbox.replay_dead_letter(letter_id)

        assert record.outbound_id == f"t1:0~replay:{letter_id}:template"
        assert again.outbound_id == record.outbound_id
        assert [r.body["template"]["name"] for r in rig.accepted(USER)] == ["we_tried"]
        assert body_params(rig.accepted(USER)[0].body) == ["your receipt"]


async def test_inside_the_window_the_free_text_goes_as_is() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        outbox = rig.outbox(templates=TEMPLATES)
        item = replace(rig.item("job1:0", "call mom", USER), purpose="reminder")
        [record] = await outbox.submit([item])
        assert record.outbound_id == "job1:0"
        assert rig.texts(USER) == ["call mom"]
