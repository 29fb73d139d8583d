"""`whatsray emulator`: flags, secrets from flags, env or generated, and the banner."""

from __future__ import annotations

import argparse

import pytest

from whatsray.cli.emulator import add_emulator_commands, banner, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_emulator_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["emulator", *argv])


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHATSRAY_APP_SECRET", raising=False)
    monkeypatch.delenv("WHATSRAY_ACCESS_TOKEN", raising=False)
    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8025)
    assert callable(args.func)
    config, sources = config_from_args(args)
    assert sources == {"app_secret": "generated", "access_token": "generated"}
    assert len(config.app_secret) >= 20 and config.app_secret != config.access_token
    assert config.phone_number_ids == ("106540352242922",)
    assert config.window_failure_mode == "sync"
    assert (config.status_batch_window_s, config.status_batch_max) == (0.025, 50)


def test_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSRAY_APP_SECRET", "env-secret")
    monkeypatch.setenv("WHATSRAY_ACCESS_TOKEN", "env-token")
    config, sources = config_from_args(parse())
    assert (config.app_secret, config.access_token) == ("env-secret", "env-token")
    assert sources["app_secret"] == "$WHATSRAY_APP_SECRET"
    config, _ = config_from_args(parse("--app-secret", "flag-secret"))
    assert config.app_secret == "flag-secret"


def test_flags_reach_the_config() -> None:
    args = parse(
        "--port", "9000",
        "--webhook-url", "http://127.0.0.1:8000/webhook",
        "--phone-number-id", "111:15550001111",
        "--phone-number-id", "222",
        "--window-failure-mode", "async",
        "--throughput-mps", "5",
        "--known-template", "hello_world",
        "--read-delay", "-1",
        "--no-window-enforcement",
        "--status-batch-window-ms", "0",
        "--status-batch-max", "7",
    )  # fmt: skip
    config, sources = config_from_args(args)
    assert config.webhook_url == "http://127.0.0.1:8000/webhook"
    assert config.phone_number_ids == ("111", "222")
    assert config.window_failure_mode == "async"
    assert config.throughput_mps == 5
    assert config.known_templates == ("hello_world",)
    assert config.status_delays.read is None
    assert config.window_enforcement is False
    assert (config.status_batch_window_s, config.status_batch_max) == (0.0, 7)

    text = banner(config, args.host, args.port, sources)
    for expected in (
        "http://127.0.0.1:9000/v25.0",
        "111",
        "222",
        config.access_token,
        config.app_secret,
        "/emulator/inbound",
        "/emulator/outbound",
    ):
        assert expected in text


def test_bad_option_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--throughput-mps", "0")
    assert args.func(args) == 2
    assert "invalid option" in capsys.readouterr().err
