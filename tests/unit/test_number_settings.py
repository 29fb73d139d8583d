"""`WHATSRAY_NUMBERS`: each business number's throughput and templates over the global ones, and
a clear error for every bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from whatsray.number_settings import NumberOverrides, resolve_number_paths
from whatsray.settings import SettingsError, load_settings

A, B = "1111", "2222"
SERVED = [A, B]


# Settings read the process environment and ./.env: every test starts from neither.
pytestmark = pytest.mark.usefixtures("settings_env_isolated")


def test_a_number_without_an_entry_has_the_global_settings() -> None:
    settings = load_settings(
        phone_number_ids=SERVED, throughput_mps=120, templates_file="t.yaml", numbers={}
    )
    number = settings.number_settings(A)
    assert (number.phone_number_id, number.throughput_mps) == (A, 120)
    assert number.templates_file == Path("t.yaml")
    assert number.templates_path == "t.yaml"


def test_each_number_overrides_what_it_sets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WHATSRAY_PHONE_NUMBER_IDS", '["1111", "2222"]')
    monkeypatch.setenv("WHATSRAY_THROUGHPUT_MPS", "80")
    monkeypatch.setenv(
        "WHATSRAY_NUMBERS",
        '{"1111": {"throughput_mps": 250, "templates_file": "configs/shop2.yaml"},'
        ' "2222": {"templates_file": null}}',
    )
    settings = load_settings()
    a, b = settings.number_settings(A), settings.number_settings(B)
    assert (a.throughput_mps, a.templates_file) == (250, Path("configs/shop2.yaml"))
    # B sets only its templates (none at all): its throughput is the global one.
    assert (b.throughput_mps, b.templates_file, b.templates_path) == (80, None, None)


def test_without_phone_number_ids_the_default_number_has_the_global_settings() -> None:
    settings = load_settings(throughput_mps=33)
    assert settings.number_settings("106540352242922").throughput_mps == 33


def test_asking_for_a_number_the_app_does_not_serve_names_it() -> None:
    settings = load_settings(phone_number_ids=SERVED)
    with pytest.raises(SettingsError, match=r"'9999' is not served.*1111, 2222"):
        settings.number_settings("9999")


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ('{"3333": {"throughput_mps": 5}}', "number '3333' is not in WHATSRAY_PHONE_NUMBER_IDS"),
        ('{"+1111": {}}', "key '+1111' is not a phone number id"),
        ('{"1111": {"throughput_mps": 0}}', "number '1111': throughput_mps: Input should be"),
        ('{"1111": {"throughput_mps": 1001}}', "less than or equal to 1000"),
        ('{"1111": {"throughput_mps": 2.5}}', "number '1111': throughput_mps"),
        ('{"1111": {"throughput": 5}}', "unknown field 'throughput'"),
        ('{"1111": 250}', "number '1111': must be an object"),
        ('["1111"]', "must be a JSON object keyed by phone number id, got list"),
        ('{"1111": ', "not valid JSON"),
    ],
)
def test_every_bad_entry_is_a_clear_error(numbers: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(phone_number_ids=SERVED, numbers=numbers)
    assert "WHATSRAY_NUMBERS: " in str(info.value)
    assert expected in str(info.value)


def test_every_problem_is_named_at_once() -> None:
    bad = '{"1111": {"throughput_mps": 0}, "4444": {}, "x": {}}'
    with pytest.raises(SettingsError) as info:
        load_settings(phone_number_ids=SERVED, numbers=bad)
    message = str(info.value)
    assert "'1111'" in message and "'4444'" in message and "'x'" in message


def test_a_number_entry_needs_phone_number_ids_set() -> None:
    with pytest.raises(SettingsError, match=r"WHATSRAY_PHONE_NUMBER_IDS \(unset"):
        load_settings(numbers={A: {"throughput_mps": 5}})


def test_overrides_given_in_code_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="number '1111': throughput_mps"):
        load_settings(phone_number_ids=SERVED, numbers={A: {"throughput_mps": -1}})
    settings = load_settings(
        phone_number_ids=SERVED, numbers={A: NumberOverrides(throughput_mps=7)}
    )
    assert settings.number_settings(A).throughput_mps == 7


def test_relative_templates_paths_are_made_absolute_and_null_stays_none(tmp_path: Path) -> None:
    numbers = {
        A: NumberOverrides(templates_file=Path("configs/a.yaml")),
        B: NumberOverrides.model_validate({"templates_file": None}),
    }
    resolved = resolve_number_paths(numbers)
    assert resolved[A].templates_file == tmp_path / "configs" / "a.yaml"
    assert resolved[B].templates_file is None and resolved[B].sets_templates_file
    settings = load_settings(phone_number_ids=SERVED, numbers=resolved)
    assert settings.number_settings(A).templates_file == tmp_path / "configs" / "a.yaml"
    assert settings.number_settings(B).templates_file is None
