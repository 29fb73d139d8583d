"""Releases (whatsray/release.py): what makes a new one, how names carry it, the retire order."""

from __future__ import annotations

from pathlib import Path

import pytest

from whatsray.release import (
    code_digest,
    in_retire_order,
    release_id,
    releases_running,
    split_versioned,
    versioned,
)
from whatsray.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents: []\n")
    return load_settings(data_dir=tmp_path, agents_file=agents, jobs_file=None, templates_file=None)


def test_the_same_code_and_settings_are_the_same_release(settings: Settings) -> None:
    assert release_id(settings, "code") == release_id(settings, "code")


def test_code_a_setting_a_secret_or_a_loaded_file_makes_a_new_release(
    settings: Settings, tmp_path: Path
) -> None:
    first = release_id(settings, "code")
    assert release_id(settings, "other code") != first
    assert release_id(settings.model_copy(update={"partitions": 8}), "code") != first
    rotated = load_settings(**{**_overrides(settings), "access_token": "rotated"})
    assert release_id(rotated, "code") != release_id(
        load_settings(**{**_overrides(settings), "access_token": "old"}), "code"
    )
    settings.agents_file.write_text("agents: [] # edited under the same path\n")
    assert release_id(settings, "code") != first


def test_a_numbers_own_templates_file_counts_by_content(settings: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates-shop2.yaml"
    templates.write_text("templates: []\n")
    numbers = load_settings(
        **_overrides(settings),
        phone_number_ids=["1111"],
        numbers={"1111": {"templates_file": str(templates)}},
    )
    first = release_id(numbers, "code")
    templates.write_text("templates: [] # edited\n")
    assert release_id(numbers, "code") != first


def test_a_release_reveals_no_secret(settings: Settings) -> None:
    secret = "s3cr3t-token-value"
    with_secret = load_settings(**{**_overrides(settings), "access_token": secret})
    assert secret not in release_id(with_secret, "code")


def test_code_digest_follows_python_files_and_ignores_caches(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    first = code_digest([package])
    (package / "__pycache__" / "a.cpython-311.py").write_text("junk")
    (package / "notes.txt").write_text("not code")
    assert code_digest([package]) == first
    (package / "a.py").write_text("x = 2\n")
    assert code_digest([package]) != first
    single = tmp_path / "serve_app.py"
    single.write_text("app = 1\n")
    assert code_digest([package, single]) != code_digest([package])


def test_names_carry_the_release() -> None:
    name = versioned("session-host-3", "0123456789ab")
    assert name == "session-host-3@0123456789ab"
    assert split_versioned(name) == ("session-host-3", "0123456789ab")
    assert split_versioned("local-services") == ("local-services", None)
    assert split_versioned("mail@example") == ("mail@example", None)  # not a release


def test_releases_running_groups_actors_by_release() -> None:
    names = [
        "store@aaaaaaaaaaaa",
        "session-host-0@aaaaaaaaaaaa",
        "store@bbbbbbbbbbbb",
        "local-services",
    ]
    assert releases_running(names) == {
        "aaaaaaaaaaaa": ["store", "session-host-0"],
        "bbbbbbbbbbbb": ["store"],
    }


def test_readers_retire_first_and_the_store_last() -> None:
    bases = {
        "store@r": "store",
        "outbox-1@r": "outbox-1",
        "agent-faq-0@r": "agent-faq-0",
        "router@r": "router",
        "scheduler@r": "scheduler",
        "session-host-1@r": "session-host-1",
        "session-host-0@r": "session-host-0",
    }
    assert in_retire_order(bases) == [
        ["session-host-0@r", "session-host-1@r"],
        ["scheduler@r"],
        ["agent-faq-0@r"],
        ["router@r"],
        ["outbox-1@r"],
        ["store@r"],
    ]


def _overrides(settings: Settings) -> dict[str, object]:
    return {
        "data_dir": settings.data_dir,
        "agents_file": settings.agents_file,
        "jobs_file": None,
        "templates_file": None,
    }
