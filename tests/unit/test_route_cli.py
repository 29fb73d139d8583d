"""`whatsray route`: one JSON line per message, from arguments or stdin, decided by the platform's
Router (rules, trained stage; the LLM classifier only with --llm); a bad file exits 2."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from whatsray.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "agents.yaml"


def rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def scripted_agents(tmp_path: Path, answer: str, **router: Any) -> Path:
    """The shipped agents with the classifier on a scripted engine that always gives `answer`."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data["engines"] = {"scripted": {"engine": "scripted", "replies": [answer], "cycle": True}}
    for agent in data["agents"]:
        agent["engine"] = "scripted"
        agent.pop("knowledge", None)
    data["router"].update(classifier_engine="scripted", **router)
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_arguments_are_routed_by_rules_and_the_trained_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = ["/support", "hello!", "mein Paket kam nie an, bestellt vor drei Wochen", "👍"]
    assert main(["route", "--agents", str(SHIPPED), *texts]) == 0
    out = rows(capsys.readouterr().out)
    assert [r["text"] for r in out] == texts
    assert out[0] == {"text": "/support", "agent": "support", "by": "rule", "confidence": None}
    assert out[1] == {"text": "hello!", "agent": "assistant", "by": "rule", "confidence": None}
    assert (out[2]["agent"], out[2]["by"]) == ("support", "trained")
    assert 0.4 <= out[2]["confidence"] <= 1
    # No word to read: the default agent, and the trained stage had nothing to say.
    assert out[3] == {"text": "👍", "agent": "assistant", "by": "fallback", "confidence": None}


def test_messages_from_stdin_one_a_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = "wann habt ihr am samstag offen\n\n   \nthe brakes u fixed are rubbing again\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["route", "--agents", str(SHIPPED)]) == 0
    out = rows(capsys.readouterr().out)
    assert [(r["text"], r["agent"]) for r in out] == [
        ("wann habt ihr am samstag offen", "faq"),
        ("the brakes u fixed are rubbing again", "support"),
    ]


def test_without_llm_the_classifier_is_never_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A threshold no guess reaches: without --llm the default agent decides, and the trained
    stage's probability is still shown; with --llm the (scripted) classifier decides."""
    agents = scripted_agents(tmp_path, '{"agent": "support"}', trained_threshold=0.999)
    assert main(["route", "--agents", str(agents), "where is the shop"]) == 0
    (row,) = rows(capsys.readouterr().out)
    assert (row["agent"], row["by"]) == ("assistant", "fallback")
    assert 0 < row["confidence"] < 0.999
    assert main(["route", "--agents", str(agents), "--llm", "where is the shop"]) == 0
    (row,) = rows(capsys.readouterr().out)
    assert row == {"text": "where is the shop", "agent": "support", "by": "llm", "confidence": None}


def test_llm_with_the_classifier_turned_off_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = scripted_agents(tmp_path, "x", classifier=False)
    assert main(["route", "--agents", str(agents), "--llm", "hi"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "turns the classifier off" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the file"),
        ("agents: [", "not valid YAML"),
        (
            "engines: {s: {engine: scripted}}\nrouter: {default_agent: a, trained_threshold: 2}\n"
            "agents: [{name: a, description: d, system_prompt: s, engine: s, examples: [hi, Hi]}]",
            "example 'Hi' is listed twice",
        ),
    ],
)
def test_a_bad_agents_file_exits_2_with_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "agents.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["route", "--agents", str(path), "hello"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("whatsray route: ") and message in captured.err
    if content and "trained_threshold" in content:
        assert "router, field 'trained_threshold'" in captured.err
