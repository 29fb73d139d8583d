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


def _run(script: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if ROW.match(line)]


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
