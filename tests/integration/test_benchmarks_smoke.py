"""The benchmarks keep working: each runs with tiny sizes and prints a full table.

Numbers are not checked (timings never decide a test); that every row is there and well formed is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| [^|]+ \| [\d,]+ \|")
ANY_LINE = re.compile(r"")


def _run(script: str, *args: str, timeout: float = 120, row: re.Pattern[str] = ROW) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if row.match(line)]


def test_webhook_core_benchmark_prints_every_body() -> None:
    rows = _run("webhook_core.py", "--seconds", "0.01")
    assert [row.split(" | ")[0] for row in rows] == [
        "| 1 text message",
        "| 1 status",
        "| 50 msgs + 50 statuses",
    ]


def test_http_paths_benchmark_prints_both_paths() -> None:
    rows = _run("http_paths.py", "--seconds", "0.3", "--concurrency", "2", "--driver", "python")
    assert [row.split(" | ")[0] for row in rows] == ["| graph send", "| webhook POST"]
    assert all("errors" not in row for row in rows)


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]


NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def test_ingest_benchmark_prints_the_platform_beside_the_baseline() -> None:
    # The Python driver: CI machines need not have wrk.
    args = ("--seconds", "0.5", "--concurrency", "2", "--driver", "python", "--max-rate", "2000")
    rows = _run("ingest.py", *args, timeout=300)
    assert [_cells(row)[:2] for row in rows] == [
        ["baseline", "2"],
        ["whatsray (Serve + HAProxy)", "2"],
    ]
    for row in rows:
        rate, p50, p99 = _cells(row)[2:]
        assert all(NUMBER.match(cell) for cell in (rate, p50, p99)), row  # no errors, no repeats


def test_end_to_end_benchmark_answers_every_message_of_every_rate() -> None:
    args = ("--rates", "4", "8", "--seconds", "1", "--chats", "3", "--drain-s", "60")
    # With the analytics summary asked for meanwhile (docs/analytics.md): every request answered.
    analytics = re.compile(r"^analytics summary every 0\.5 s: [1-9]\d* requests, .* ms$")
    lines = _run("end_to_end.py", *args, "--analytics-every", "0.5", timeout=300, row=ANY_LINE)
    rows = [line for line in lines if ROW.match(line)]
    assert [_cells(row)[:3] for row in rows] == [["4", "4", "4"], ["8", "8", "8"]]
    [polled] = [line for line in lines if line.startswith("analytics")]
    assert analytics.match(polled), polled
    for row in rows:
        *numbers, held = _cells(row)[3:]
        assert all(NUMBER.match(cell) for cell in numbers), row
        assert held in ("yes", "no"), row


def test_session_capacity_benchmark_prints_every_size() -> None:
    rows = _run("session_capacity.py", "--sessions", "20", "40", "--messages", "1", "2")
    assert [_cells(row)[:2] for row in rows] == [["20", "1"], ["40", "1"], ["20", "2"], ["40", "2"]]
    for row in rows:
        assert all(NUMBER.match(cell) for cell in _cells(row)[2:]), row


def test_router_accuracy_benchmark_prints_every_row() -> None:
    rows = _run(
        "router_accuracy.py",
        "--agents",
        "tests/data/router_agents.yaml",
        "--engine",
        "scripted",
        "--limit",
        "6",
        "--quiet",
    )
    names = ["| rules only", "| rules + trained", "| rules + trained + scripted"]
    assert [row.split(" | ")[0] for row in rows] == names


def test_inference_benchmark_prints_a_row_per_level() -> None:
    rows = _run("inference.py", "--engines", "llamacpp", "--levels", "1", "2", "--max-tokens", "4")
    assert [_cells(row)[:2] for row in rows] == [["llamacpp", "1"], ["llamacpp", "2"]]


def test_emulator_cost_benchmark_prints_a_row_per_window() -> None:
    args = ("--messages", "20", "--warmup", "5", "--rates", "50", "--batch-windows-ms", "0", "25")
    rows = _run("emulator_cost.py", *args)
    assert [_cells(row)[0] for row in rows] == ["50", "50"]
    assert [_cells(row)[2] for row in rows] == ["0 ms", "25 ms"]


def test_store_ceiling_benchmark_prints_both_calls_per_fill_and_batch() -> None:
    args = ("--fills", "200", "1000", "--batches", "1", "5", "--turns", "10", "--users", "5")
    rows = _run("store_ceiling.py", *args)
    assert [_cells(row)[1:3] for row in rows] == [
        ["1", "commit_turns"],
        ["1", "write_behind"],
        ["5", "commit_turns"],
        ["5", "write_behind"],
    ] * 2
    for row in rows:
        cells = _cells(row)
        assert all(NUMBER.match(cell) for cell in (cells[0], *cells[3:])), row


def test_multinode_benchmark_answers_every_message_on_each_partition_count() -> None:
    # One simulated cluster (head + 2 workers, two session hosts spread over them): CI time is
    # dear, and one cluster exercises the whole script.
    args = ("--partitions", "2", "--rates", "4", "--seconds", "1", "--chats", "3")
    rows = _run("multinode.py", *args, "--drain-s", "60", timeout=600)
    assert [_cells(row)[:4] for row in rows] == [["2", "4", "4", "4"]]
    for row in rows:
        *numbers, held = _cells(row)[4:]
        assert all(NUMBER.match(cell) for cell in numbers), row
        assert held in ("yes", "no"), row


def test_metrics_cost_benchmark_prints_both_bindings() -> None:
    costs = re.compile(r"^\| [^|]+ \| [\d.]+ \|")
    rows = _run("metrics_cost.py", "--records", "200", timeout=180, row=costs)
    assert [_cells(row)[0] for row in rows] == [
        "ray.util.metrics (in an actor)",
        "prometheus-client",
    ]
    for row in rows:
        assert all(NUMBER.match(cell) for cell in _cells(row)[1:]), row


def test_log_cost_benchmark_prints_the_writer_and_the_total() -> None:
    costs = re.compile(r"^\| [^|]+ \| \**[\d.]+\** \|")
    args = ("--lines", "200", "--settle-s", "1")
    rows = [_cells(row) for row in _run("log_cost.py", *args, timeout=180, row=costs)]
    assert rows[0][0] == "the actor writing (its own clock)"
    assert rows[-1][0] == "**all processes**"
