"""The whole platform with its agent on the vLLM deployment: Serve ingress, session hosts, agent
workers calling the deployment's handle, the emulator as WhatsApp, a real Valkey. One Ray
cluster and one app (with its vLLM deployment bound in) for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ray_serve import running_whatsray
from whatsray.settings import Settings
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

AGENTS = Path(__file__).resolve().parent / "agents.yaml"


@dataclass
class Running:
    settings: Settings
    api: httpx.Client
    emulator: httpx.Client

    @property
    def admin(self) -> dict[str, str]:
        assert self.settings.admin_token is not None
        return {"Authorization": f"Bearer {self.settings.admin_token.get_secret_value()}"}

    def user_says(self, user: str, text: str) -> None:
        body = {"from": user, "message": {"type": "text", "text": text}}
        response = self.emulator.post("/emulator/inbound", json=body)
        assert response.status_code == 200, response.text

    def texts_to(self, user: str, count: int, within_s: float = 120.0) -> list[str]:
        deadline = time.monotonic() + within_s
        while True:
            records: list[dict[str, Any]] = self.emulator.get(
                "/emulator/outbound", params={"to": user}
            ).json()
            texts = [r["body"]["text"]["body"] for r in records if r["outcome"] == "accepted"]
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Iterator[Running]:
    with running_whatsray(
        tmp_path_factory.mktemp("vllm-platform"),
        api_timeout_s=120,
        ready_within_s=300,  # the vLLM replica loads its model first
        partitions=1,
        agents_file=AGENTS,
    ) as app:
        yield Running(app.settings, app.api, app.emulator)


def test_a_user_gets_the_models_answer_and_the_turn_says_vllm(running: Running) -> None:
    import ray

    import serve_app

    user = "15550007001"
    running.user_says(user, "What is the capital of France?")
    [reply] = running.texts_to(user, 1)
    assert "Paris" in reply
    store = serve_app.find_actor(serve_app.STORE_NAME)
    chat = f"{DEFAULT_PHONE_NUMBER_ID}:{user}"
    [turn] = ray.get(store.list_turns.remote(chat))
    assert (turn.agent, turn.engine, turn.outcome) == ("assistant", "vllm", "ok")
    assert turn.tokens_out > 0


def test_many_chats_at_once_each_get_one_answer(running: Running) -> None:
    users = [f"155500071{n:02d}" for n in range(12)]
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda u: running.user_says(u, f"Say hello to {u[-2:]}."), users))
    for user in users:
        texts = running.texts_to(user, 1)
        assert len(texts) == 1 and texts[0].strip(), (user, texts)
    time.sleep(1)
    assert all(len(running.texts_to(u, 2, within_s=0.1)) == 1 for u in users)


def test_the_inference_load_shows_the_deployments_capacity(running: Running) -> None:
    body = running.api.get("/api/inference", headers=running.admin).json()
    [assistant] = body["agents"]
    assert assistant["engine"]["capacity"] == 16  # vLLM's max_num_seqs, from the replica
    assert assistant["capacity"] == 16  # the worker admits as many turns as vLLM batches
    assert assistant["admitted"] >= 1


def test_the_openai_api_of_the_deployment_is_served_behind_the_admin_token(
    running: Running,
) -> None:
    request = {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        "temperature": 0,
    }
    refused = running.api.post("/llm/vllm/v1/chat/completions", json=request)
    assert refused.status_code == 401
    answer = running.api.post("/llm/vllm/v1/chat/completions", json=request, headers=running.admin)
    assert answer.status_code == 200, answer.text
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]
    models = running.api.get("/llm/vllm/v1/models", headers=running.admin).json()
    assert len(models["data"]) == 1
    bad = running.api.post(
        "/llm/vllm/v1/chat/completions", json={"messages": []}, headers=running.admin
    )
    assert bad.status_code == 400 and "error" in bad.json()
