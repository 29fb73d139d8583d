"""Settings from secret files (`WHATSRAY_SECRETS_DIR`, docs/settings.md): one file per setting,
named like its variable, the content its value; the environment wins over a file; a directory
that is not there is a clear `SettingsError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from whatsray.settings import SettingsError, load_settings

CLUSTER_SECRETS = {
    "WHATSRAY_APP_SECRET": "app-secret-from-file",
    "WHATSRAY_VERIFY_TOKEN": "verify-from-file",
    "WHATSRAY_ACCESS_TOKEN": "EAAG-from-file",
    "WHATSRAY_ADMIN_TOKEN": "admin-from-file",
    "WHATSRAY_REDIS_URL": "redis://:pw@valkey.internal:6380/0",
}


# Settings read the process environment and ./.env: every test starts from neither.
pytestmark = pytest.mark.usefixtures("settings_env_isolated")


def secrets_dir(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (path / name).write_text(value + "\n")  # as `kubectl create secret --from-file` keeps it
    return path


def test_cluster_mode_starts_from_secret_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = secrets_dir(tmp_path / "secrets", CLUSTER_SECRETS)
    monkeypatch.setenv("WHATSRAY_SECRETS_DIR", str(folder))
    monkeypatch.setenv("WHATSRAY_MODE", "cluster")
    monkeypatch.setenv("WHATSRAY_PHONE_NUMBER_IDS", '["106540352242922"]')

    settings = load_settings()

    assert settings.secrets_dir == folder
    assert settings.app_secret is not None
    assert settings.app_secret.get_secret_value() == "app-secret-from-file"  # newline stripped
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "admin-from-file"
    assert settings.redis_url == CLUSTER_SECRETS["WHATSRAY_REDIS_URL"]


def test_file_names_are_matched_without_regard_to_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = secrets_dir(
        tmp_path / "s", {"whatsray_verify_token": "lower", "WHATSRAY_PARTITIONS": "4"}
    )
    settings = load_settings(secrets_dir=str(folder))
    assert settings.verify_token is not None
    assert settings.verify_token.get_secret_value() == "lower"
    assert settings.partitions == 4  # any setting, not only secrets, and validated as usual


def test_the_environment_wins_over_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = secrets_dir(tmp_path / "s", {"WHATSRAY_ACCESS_TOKEN": "from-file"})
    monkeypatch.setenv("WHATSRAY_SECRETS_DIR", str(folder))
    monkeypatch.setenv("WHATSRAY_ACCESS_TOKEN", "from-env")
    settings = load_settings()
    assert settings.access_token is not None
    assert settings.access_token.get_secret_value() == "from-env"


def test_the_directory_may_be_named_in_the_dotenv_file(tmp_path: Path) -> None:
    folder = secrets_dir(tmp_path / "s", {"WHATSRAY_ADMIN_TOKEN": "via-dotenv-dir"})
    (tmp_path / ".env").write_text(f"WHATSRAY_SECRETS_DIR={folder}\n")
    settings = load_settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "via-dotenv-dir"


def test_a_path_given_in_code_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WHATSRAY_SECRETS_DIR", str(tmp_path / "not-mounted"))
    folder = secrets_dir(tmp_path / "s", {"WHATSRAY_VERIFY_TOKEN": "from-code-dir"})
    settings = load_settings(secrets_dir=folder)  # a Path, as code would pass it
    assert settings.verify_token is not None
    assert settings.verify_token.get_secret_value() == "from-code-dir"


def test_a_kubernetes_secret_volume_with_its_symlinks_is_read(tmp_path: Path) -> None:
    # Kubernetes mounts each key as a link into `..data`, itself a link to a timestamped folder.
    mount = tmp_path / "mount"
    real = secrets_dir(mount / "..2026_01_01_00_00_00.000000001", {"WHATSRAY_APP_SECRET": "k8s"})
    (mount / "..data").symlink_to(real.name)
    (mount / "WHATSRAY_APP_SECRET").symlink_to("..data/WHATSRAY_APP_SECRET")
    settings = load_settings(secrets_dir=str(mount))
    assert settings.app_secret is not None
    assert settings.app_secret.get_secret_value() == "k8s"


def test_a_bad_value_in_a_file_is_named_like_any_other(tmp_path: Path) -> None:
    folder = secrets_dir(tmp_path / "s", {"WHATSRAY_REDIS_URL": "redis://valkey.internal:6379"})
    with pytest.raises(SettingsError, match="WHATSRAY_REDIS_URL: port 6379 is Ray's GCS port"):
        load_settings(secrets_dir=str(folder))


def test_a_missing_directory_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WHATSRAY_SECRETS_DIR", str(tmp_path / "not-mounted"))
    with pytest.raises(
        SettingsError, match=r"WHATSRAY_SECRETS_DIR: no such directory: .*not-mounted"
    ):
        load_settings()


def test_a_file_instead_of_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.env").write_text("WHATSRAY_APP_SECRET=x\n")
    with pytest.raises(SettingsError, match="WHATSRAY_SECRETS_DIR: not a directory"):
        load_settings(secrets_dir=str(tmp_path / "secrets.env"))


def test_unset_reads_no_files(tmp_path: Path) -> None:
    secrets_dir(tmp_path / "s", {"WHATSRAY_APP_SECRET": "never-read"})
    settings = load_settings()
    assert settings.secrets_dir is None and settings.app_secret is None
