"""build_engine: config mappings (as in agents.yaml) to engines, with clear errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.fake_openai import FakeOpenAI
from whatsray.llm import (
    ChatMessage,
    LLMConfigError,
    OpenAICompatibleEngine,
    ScriptedEngine,
    build_engine,
)

HI = [ChatMessage.user("what are your hours?")]


async def test_scripted_echo_by_default():
    engine = build_engine({"engine": "scripted"})
    assert isinstance(engine, ScriptedEngine)
    assert (await engine.chat(HI)).content == "echo: what are your hours?"


async def test_scripted_from_yaml_replies_and_rules():
    specs = yaml.safe_load(
        """
        replies:
          engine: scripted
          name: canned
          replies: ["first", {"content": "", "tool_calls": [{"name": "t", "arguments": {}}]}]
          cycle: true
        rules:
          engine: scripted
          rules:
            - {match: "hours?", reply: "9 to 5"}
          default: "Ask me about hours."
        echo:
          engine: scripted
          mode: echo
          prefix: "bot: "
        """
    )
    canned = build_engine(specs["replies"])
    first, second, third = [await canned.chat(HI) for _ in range(3)]
    assert (first.content, first.engine) == ("first", "canned")
    assert second.tool_calls[0].name == "t"
    assert third.content == "first"
    assert (await build_engine(specs["rules"]).chat(HI)).content == "9 to 5"
    assert (await build_engine(specs["echo"]).chat(HI)).content == "bot: what are your hours?"


def test_scripted_mode_without_its_data_is_an_error():
    with pytest.raises(ValueError, match="non-empty 'replies'"):
        build_engine({"engine": "scripted", "mode": "replies"})
    with pytest.raises(ValueError, match="non-empty 'rules'"):
        build_engine({"engine": "scripted", "mode": "rules", "rules": []})


async def test_openai_with_the_key_from_the_environment():
    fake = FakeOpenAI()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        engine = build_engine(
            {
                "engine": "openai",
                "base_url": "http://ollama.test/v1/",
                "model": "llama3.2",
                "api_key_env": "MY_LLM_KEY",
                "max_tokens": 100,
                "max_retries": 0,
                "extra_body": {"top_p": 0.5},
            },
            http=http,
            env={"MY_LLM_KEY": "sk-from-env"},
        )
        assert isinstance(engine, OpenAICompatibleEngine)
        reply = await engine.chat(HI)
        await engine.close()
        assert not http.is_closed  # a shared client stays open
    assert reply.content == "echo: what are your hours?"
    assert fake.headers[0]["authorization"] == "Bearer sk-from-env"
    assert fake.requests[0]["model"] == "llama3.2"
    assert (fake.requests[0]["max_tokens"], fake.requests[0]["top_p"]) == (100, 0.5)
    assert engine.max_retries == 0


async def test_openai_without_a_client_owns_one():
    engine = build_engine(
        {"engine": "openai", "base_url": "http://localhost:11434/v1", "model": "m"}, env={}
    )
    assert isinstance(engine, OpenAICompatibleEngine)
    client = engine.http
    await engine.close()
    assert client.is_closed


def test_openai_missing_env_key_is_named():
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_engine(
            {
                "engine": "openai",
                "base_url": "https://api.openai.com/v1",
                "model": "gpt-x",
                "api_key_env": "OPENAI_API_KEY",
            },
            env={},
        )


def test_openai_key_twice_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        build_engine(
            {
                "engine": "openai",
                "base_url": "http://x/v1",
                "model": "m",
                "api_key": "k",
                "api_key_env": "K",
            },
            env={"K": "v"},
        )


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"engine": "openai", "model": "m"}, ["base_url", "Field required"]),
        (
            {"engine": "openai", "base_url": "localhost:11434", "model": "m"},
            ["base_url", "http(s)"],
        ),
        (
            {"engine": "openai", "base_url": "http://x", "model": "m", "timeout": 3},
            ["timeout", "unknown key"],
        ),
        (
            {"engine": "openai", "base_url": "http://x", "model": "m", "max_retries": -1},
            ["max_retries"],
        ),
        ({"engine": "llamacpp", "pool_size": 0}, ["pool_size"]),
        ({"engine": "scripted", "mode": "poetry"}, ["mode"]),
    ],
)
def test_bad_config_says_what_is_wrong(spec, fragments):
    with pytest.raises(ValueError) as caught:
        build_engine(spec, env={})
    message = str(caught.value)
    assert message.startswith(f"invalid config for the {spec['engine']} LLM engine")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("spec", [{"engine": "gpt5"}, {"model": "x"}, {"engine": None}])
def test_unknown_engine_names_the_allowed_ones(spec):
    with pytest.raises(ValueError, match="must be one of llamacpp, openai, scripted"):
        build_engine(spec)


def test_config_must_be_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        build_engine(["scripted"])  # type: ignore[arg-type]


def test_llamacpp_with_a_missing_model_file(tmp_path: Path):
    with pytest.raises(LLMConfigError, match="no GGUF file"):
        build_engine({"engine": "llamacpp", "model_path": str(tmp_path / "nope.gguf")})
