"""`whatsray webhook parse|sign`, through `whatsray.cli.main` and once as a real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from whatsray.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
# Computed once with `openssl dgst -sha256 -hmac whatsray-golden-secret unicode_escaped.json`.
UNICODE_SIGNATURE = "sha256=17b9af95fef0aa2a018c6961a61861622a436a7d4eda272b03d8e301f46cdadc"


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def feed_stdin(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))


def test_parse_prints_one_json_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["webhook", "parse", str(FIXTURES / "batch.json")]) == 0
    out = lines(capsys.readouterr().out)
    assert [(o["kind"], o["type"]) for o in out] == [
        ("message", "text"),
        ("message", "image"),
        ("message", "text"),
        ("status", "sent"),
        ("status", "delivered"),
        ("status", "read"),
        ("message", "text"),
        ("other", "message_template_status_update"),
    ]
    assert out[0]["id"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQkE3MTc1RjM1NEE0MDQ1QjA2MQA="
    assert out[0]["chat"] == "106540352242922:16505551234"
    assert out[0]["text"] == "hi"
    assert out[3]["id"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3RjJENTZDNEFBMzcxRkU0NTkA:sent"
    assert out[7]["chat"] is None


def test_parse_reads_stdin_and_prints_unicode_unescaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, (FIXTURES / "unicode_escaped.json").read_bytes())
    assert main(["webhook", "parse", "-"]) == 0
    out = capsys.readouterr().out
    assert (
        "Hallå! äöå \U0001f600\U0001f389 see https://example.com/shop" in out
    )  # ensure_ascii=False
    (summary,) = lines(out)
    assert summary["name"] == "Jörg Åström"


def test_parse_of_a_body_with_no_events_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, b'{"object": "whatsapp_business_account", "entry": []}')
    assert main(["webhook", "parse", "-"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""])
def test_parse_of_malformed_json_exits_2_with_one_line(
    raw: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, raw)
    assert main(["webhook", "parse", "-"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("whatsray webhook parse: webhook body is not")


def test_parse_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhook", "parse", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_sign_prints_the_header_value_of_the_raw_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "unicode_escaped.json"
    assert main(["webhook", "sign", "--secret", "whatsray-golden-secret", str(path)]) == 0
    assert capsys.readouterr().out == UNICODE_SIGNATURE + "\n"


def test_sign_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, b'{"object":"whatsapp_business_account","entry":[]}')
    assert main(["webhook", "sign", "--secret", "s3cr3t", "-"]) == 0
    assert capsys.readouterr().out.strip() == (
        "sha256=db780e74b7152a02fc0b09479909f9711f095199be060883718889797fa8638d"
    )


def test_sign_without_a_secret_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["webhook", "sign", str(FIXTURES / "batch.json")])
    assert exited.value.code == 2


def test_webhook_without_a_command_prints_help_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["webhook"]) == 2
    assert "parse" in capsys.readouterr().err


def test_installed_script_parses_a_fixture() -> None:
    script = Path(sys.executable).parent / "whatsray"
    result = subprocess.run(
        [str(script), "webhook", "parse", str(FIXTURES / "status_failed.json")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    (summary,) = lines(result.stdout.decode("utf-8"))
    assert summary["kind"] == "status"
    assert summary["type"] == "failed"
    assert summary["error_codes"] == [131047]
    assert summary["chat"] == "106540352242922:16505551234"
