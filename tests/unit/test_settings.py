"""Settings: env prefix, .env support, masked secrets, clear errors for missing or bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from whatsray.settings import (
    LocalSecrets,
    Settings,
    SettingsError,
    load_settings,
    resolve_local_secrets,
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Settings read the process environment and ./.env: start every test from neither.
    for name in list(__import__("os").environ):
        if name.startswith("WHATSRAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_local_mode() -> None:
    settings = load_settings()
    assert settings.mode == "local"
    assert settings.graph_api_version == "v25.0"
    assert settings.throughput_mps == 80
    assert settings.app_secret is None


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSRAY_APP_SECRET", "s3cret")
    monkeypatch.setenv("WHATSRAY_PHONE_NUMBER_IDS", '["106540352242922"]')
    monkeypatch.setenv("WHATSRAY_THROUGHPUT_MPS", "250")
    settings = load_settings()
    assert settings.app_secret is not None
    assert settings.app_secret.get_secret_value() == "s3cret"
    assert settings.phone_number_ids == ["106540352242922"]
    assert settings.throughput_mps == 250


def test_reads_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WHATSRAY_VERIFY_TOKEN=from-dotenv\nWHATSRAY_MODE=local\n")
    settings = load_settings()
    assert settings.verify_token is not None
    assert settings.verify_token.get_secret_value() == "from-dotenv"


def test_secrets_never_show_in_repr_or_dump() -> None:
    settings = load_settings(app_secret="hunter2", access_token="EAAG-token")
    assert "hunter2" not in repr(settings)
    assert "EAAG-token" not in str(settings.model_dump(mode="json"))


def test_cluster_mode_names_every_missing_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(mode="cluster")
    message = str(info.value)
    for name in (
        "WHATSRAY_APP_SECRET",
        "WHATSRAY_VERIFY_TOKEN",
        "WHATSRAY_ACCESS_TOKEN",
        "WHATSRAY_ADMIN_TOKEN",
        "WHATSRAY_PHONE_NUMBER_IDS",
        "WHATSRAY_REDIS_URL",
    ):
        assert name in message


def test_cluster_mode_accepts_complete_settings() -> None:
    settings = load_settings(
        mode="cluster",
        app_secret="a",
        verify_token="v",
        access_token="t",
        admin_token="adm",
        phone_number_ids=["106540352242922"],
        redis_url="redis://redis.internal:6380/0",
    )
    assert settings.mode == "cluster"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("graph_api_version", "25.0", "WHATSRAY_GRAPH_API_VERSION: must look like 'v25.0'"),
        (
            "graph_api_base_url",
            "graph.facebook.com",
            "WHATSRAY_GRAPH_API_BASE_URL: must be an http",
        ),
        ("redis_url", "http://localhost:6380", "WHATSRAY_REDIS_URL: must start with redis://"),
        ("redis_url", "redis://localhost:6379/0", "WHATSRAY_REDIS_URL: port 6379 is Ray's GCS"),
        ("redis_url", "redis://localhost/0", "WHATSRAY_REDIS_URL: port 6379 is Ray's GCS"),
        ("throughput_mps", 1001, "WHATSRAY_THROUGHPUT_MPS"),
        ("phone_number_ids", ["+1555"], "WHATSRAY_PHONE_NUMBER_IDS: phone number ids are digits"),
        ("mode", "prod", "WHATSRAY_MODE"),
    ],
)
def test_malformed_values_get_a_clear_message(field: str, value: object, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**{field: value})
    assert expected in str(info.value)


def test_malformed_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSRAY_HTTP_PORT", "eighty")
    with pytest.raises(SettingsError, match="WHATSRAY_HTTP_PORT"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.mode = "cluster"  # type: ignore[misc]


def test_local_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = resolve_local_secrets(load_settings(data_dir=tmp_path / "data"))
    second = resolve_local_secrets(load_settings(data_dir=tmp_path / "data"))
    for name in LocalSecrets.NAMES:
        value = getattr(first, name)
        assert value is not None and len(value.get_secret_value()) >= 24
        assert value == getattr(second, name)
    assert first.app_secret != first.verify_token
    stored = tmp_path / "data" / "local-secrets.env"
    assert stored.stat().st_mode & 0o077 == 0  # readable by the owner only


def test_explicit_secret_wins_over_stored_one(tmp_path: Path) -> None:
    resolve_local_secrets(load_settings(data_dir=tmp_path))
    settings = resolve_local_secrets(load_settings(data_dir=tmp_path, app_secret="mine"))
    assert settings.app_secret is not None
    assert settings.app_secret.get_secret_value() == "mine"


def test_cluster_mode_never_generates_secrets(tmp_path: Path) -> None:
    settings = Settings(
        mode="cluster",
        app_secret="a",
        verify_token="v",
        access_token="t",
        admin_token="x",
        phone_number_ids=["1"],
        redis_url="redis://h:6380",
        data_dir=tmp_path,
    )
    assert resolve_local_secrets(settings) is settings
    assert not (tmp_path / "local-secrets.env").exists()
