"""`whatsray status`: the rendering (a pure function) and the command against a fake admin API
(the real admin router on loopback, its status port answering a fixed snapshot)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

import whatsray.cli.status as status_cli
from tests.support.servers import free_port, serve_on_loopback
from whatsray.admin import create_admin_router
from whatsray.admin.status_models import StatusOut
from whatsray.cli import main
from whatsray.cli.status_render import format_age, render_status
from whatsray.settings import LocalSecrets

TOKEN = "status-test-token"
PNID = "106540352242922"
URL = "http://127.0.0.1:8000"

SNAPSHOT = StatusOut.model_validate(
    {
        "taken_at": 1_750_000_000.0,
        "partitions": [
            {"partition": 0, "lag": 0, "pending": 1, "oldest_pending_s": 0.42,
             "sessions_active": 12, "sessions_busy": 1},
            {"partition": 1, "lag": 130, "pending": 0, "oldest_pending_s": 0.0,
             "sessions_active": 3, "sessions_busy": 0},
        ],
        "agents": [
            {"agent": "assistant", "workers": 2, "running": 1, "waiting": 0, "capacity": 8,
             "saturated": False},
            {"agent": "faq", "workers": 1, "running": 4, "waiting": 3, "capacity": 4,
             "saturated": True, "engine_running": 4, "engine_waiting": 2},
        ],
        "outboxes": [
            {"phone_number_id": PNID, "queue_depth": 2, "oldest_pending_s": 75.0,
             "throughput_mps": 80.0, "tokens_available": 78.5, "pair_buckets": 14,
             "waiting_sends": 0},
        ],
        "dead_letters": 2,
        "handoffs": 1,
        "next_runs": [
            {"job_id": "system:greeting", "name": "morning greeting", "kind": "system",
             "chat": None, "at": 1_750_003_600.0},
            {"job_id": "r1", "name": "call the dentist", "kind": "reminder",
             "chat": f"{PNID}:15551234567", "at": 1_750_090_000.0},
        ],
        "unavailable": [],
    }
)  # fmt: skip

EXPECTED = """\
whatsray at http://127.0.0.1:8000, 2025-06-15 15:06:40Z

Partitions
  PARTITION  LAG  PENDING  OLDEST PENDING
          0    0        1            0.4s
          1  130        0               -

Sessions
  PARTITION  ACTIVE  BUSY
          0      12     1
          1       3     0

Agents
  AGENT      WORKERS  RUNNING  WAITING  CAPACITY  ENGINE RUN/WAIT  SATURATED
  assistant        2        1        0         8                -  no
  faq              1        4        3         4              4/2  yes

Outboxes
  PHONE NUMBER ID  QUEUE  OLDEST PENDING  TOKENS/MPS  PAIRS  WAITING
  106540352242922      2           1m15s     78.5/80     14        0

Dead letters
  2 not replayed

Handoffs
  1 active

Next runs
  AT                    IN        JOB               KIND      CHAT
  2025-06-15 16:06:40Z  in 1h00m  morning greeting  system    -
  2025-06-16 16:06:40Z  in 1d01h  call the dentist  reminder  106540352242922:15551234567"""


# --- rendering -------------------------------------------------------------------------------


def test_every_section_in_aligned_columns() -> None:
    assert render_status(SNAPSHOT, URL) == EXPECTED


def test_a_part_that_did_not_answer_shows_as_unknown_and_is_named() -> None:
    partition = SNAPSHOT.partitions[0].model_copy(
        update={"lag": None, "pending": None, "oldest_pending_s": None}
    )
    outbox = SNAPSHOT.outboxes[0].model_copy(
        update={"queue_depth": None, "oldest_pending_s": None, "tokens_available": None}
    )
    broken = SNAPSHOT.model_copy(
        update={
            "partitions": [partition, SNAPSHOT.partitions[1]],
            "agents": [SNAPSHOT.agents[0].model_copy(update={"workers": None, "running": None})],
            "outboxes": [outbox],
            "dead_letters": None,
            "next_runs": None,
            "unavailable": ["inbox 0", f"outbox {PNID}", "store", "scheduler"],
        }
    )
    lines = render_status(broken, URL).splitlines()

    assert "          0    ?        ?               ?" in lines
    assert f"  {PNID}      ?               ?           ?     14        0" in lines
    assert "  ? not replayed" in lines
    assert lines[lines.index("Next runs") + 1] == "  ?"
    assert lines[-1] == f"Unavailable (did not answer): inbox 0, outbox {PNID}, store, scheduler"


def test_empty_sections_say_none() -> None:
    empty = SNAPSHOT.model_copy(update={"agents": [], "outboxes": [], "next_runs": []})
    lines = render_status(empty, URL).splitlines()
    for title in ("Agents", "Outboxes", "Next runs"):
        assert lines[lines.index(title) + 1] == "  (none)"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0, "0.0s"), (9.94, "9.9s"), (12.0, "12s"), (185.0, "3m05s"), (7800.0, "2h10m"),
     (273600.0, "3d04h")],
)  # fmt: skip
def test_ages_are_short(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown


# --- the command against a fake admin API ----------------------------------------------------


@dataclass
class FakeStatusApi:
    snapshot: StatusOut
    calls: int = 0

    async def report(self) -> StatusOut:
        self.calls += 1
        return self.snapshot

    def app(self) -> FastAPI:
        app = FastAPI()
        app.include_router(
            create_admin_router(
                admin_token=TOKEN,
                store=None,  # type: ignore[arg-type]  # the status route reads no store
                outbox_for=lambda _: None,  # type: ignore[arg-type,return-value]
                phone_number_ids=[PNID],
                status=self.report,
            )
        )
        return app


pytestmark = pytest.mark.usefixtures("settings_env_isolated")


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[str, FakeStatusApi]]:
    fake = FakeStatusApi(SNAPSHOT)
    with serve_on_loopback(fake.app()) as url:
        yield url, fake


def test_prints_the_view(
    fake_api: tuple[str, FakeStatusApi], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    assert main(["status", "--url", url, "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert out == EXPECTED.replace(URL, url) + "\n"


def test_json_is_the_snapshot(
    fake_api: tuple[str, FakeStatusApi], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    assert main(["status", "--url", url, "--token", TOKEN, "--json"]) == 0
    assert StatusOut.model_validate(json.loads(capsys.readouterr().out)) == SNAPSHOT


def test_the_url_and_token_come_from_the_environment(
    fake_api: tuple[str, FakeStatusApi],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = fake_api
    monkeypatch.setenv("WHATSRAY_MCP_API_URL", url + "/")
    monkeypatch.setenv("WHATSRAY_ADMIN_TOKEN", TOKEN)
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith(f"whatsray at {url}, ")


def test_local_mode_finds_the_token_in_the_data_directory(
    fake_api: tuple[str, FakeStatusApi], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    secrets = LocalSecrets(tmp_path / "data")  # as `whatsray local` keeps them
    secrets.path.parent.mkdir(parents=True)
    secrets.path.write_text(f"WHATSRAY_ADMIN_TOKEN={TOKEN}\n")
    assert main(["status", "--url", url]) == 0
    assert "\nOutboxes\n" in capsys.readouterr().out


def test_a_wrong_token_is_one_line_and_exit_2(
    fake_api: tuple[str, FakeStatusApi], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    assert main(["status", "--url", url, "--token", "wrong"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: whatsray at {url} refused the admin token (403: ")
    assert "wrong" not in captured.err  # the token is not echoed back


def test_no_token_anywhere_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("error: no admin token: set WHATSRAY_ADMIN_TOKEN")


def test_a_bad_url_in_the_settings_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHATSRAY_MCP_API_URL", "localhost:8000")
    assert main(["status", "--token", TOKEN]) == 2
    assert "WHATSRAY_MCP_API_URL is not an http(s) URL" in capsys.readouterr().err


def test_an_unreachable_url_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["status", "--url", url, "--token", TOKEN]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach whatsray at {url} (")
    assert err.count("\n") == 1


def test_a_server_without_the_status_route_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_on_loopback(FastAPI()) as url:
        assert main(["status", "--url", url, "--token", TOKEN]) == 1
    assert capsys.readouterr().err.startswith(f"error: {url} has no /api/status")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--url", "127.0.0.1:8000"], "not an http(s) URL"),
        (["--watch", "0"], "refresh every 0.1 to 3600 seconds"),
        (["--watch", "soon"], "not a number of seconds"),
    ],
)
def test_bad_options_are_refused(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--token", TOKEN, *argv])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_watch_refreshes_until_ctrl_c(
    fake_api: tuple[str, FakeStatusApi],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, fake = fake_api
    pauses = _ctrl_c_after(3, monkeypatch)
    before = fake.calls
    assert main(["status", "--url", url, "--token", TOKEN, "--watch", "0.5"]) == 0

    assert pauses == [0.5, 0.5, 0.5]
    assert fake.calls - before == 3
    assert capsys.readouterr().out.count("\nPartitions\n") == 3


def test_watch_keeps_trying_an_unreachable_url_but_stops_on_a_refused_token(
    fake_api: tuple[str, FakeStatusApi],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pauses = _ctrl_c_after(2, monkeypatch)
    down = f"http://127.0.0.1:{free_port()}"
    assert main(["status", "--url", down, "--token", TOKEN, "--watch"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"error: cannot reach whatsray at {down}") == 2
    assert pauses == [2.0, 2.0]

    url, _ = fake_api
    assert main(["status", "--url", url, "--token", "wrong", "--watch"]) == 2
    assert "refused the admin token" in capsys.readouterr().err
    assert len(pauses) == 2  # no further refresh


def test_watch_with_json_prints_one_snapshot_per_line(
    fake_api: tuple[str, FakeStatusApi],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = fake_api
    _ctrl_c_after(2, monkeypatch)
    assert main(["status", "--url", url, "--token", TOKEN, "--watch", "1", "--json"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [StatusOut.model_validate_json(line) for line in lines] == [SNAPSHOT, SNAPSHOT]


def _ctrl_c_after(refreshes: int, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`--watch`'s pauses, recorded; the pause after `refreshes` refreshes is a Ctrl-C."""
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == refreshes:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_cli, "sleep", sleep)
    return pauses
