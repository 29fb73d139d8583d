"""`whatsray local` as a user runs it (the CLI, in a subprocess), until its banner; Ctrl-C on the
way out. Shared by `tests/integration/test_local_mode.py` and the `--kill-all` soak
(`tests/support/kill_all.py`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

# Serve and Ray shut down in well under a minute on a quiet machine; a busy CI box needs longer.
SHUTDOWN_S = 180


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def whatsray_local(
    data: Path,
    http_port: int,
    emulator_port: int,
    *extra: str,
    env: Mapping[str, str] | None = None,
    ignore_sigint: bool = False,
    start_timeout_s: float | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """`whatsray local` until its banner (Ray's metrics on a free port unless `extra` names
    one); yields the process, its stdout at the banner's next line. Its environment is this
    one's without any `WHATSRAY_` or `RAY_` variable, plus `env`; `ignore_sigint`: started with
    SIGINT ignored (as a CI job started in the background). SIGINT on the way out, unless it is
    already dead."""
    if "--metrics-port" not in extra:  # the default, 8080, may be taken on a CI machine
        extra = ("--metrics-port", str(free_port()), *extra)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSRAY_", "RAY_"))}
    environment.update(env or {})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whatsray.cli",
            "local",
            "--data-dir",
            str(data),
            "--http-port",
            str(http_port),
            "--emulator-port",
            str(emulator_port),
            *extra,
        ],
        cwd=ROOT,
        env=environment,
        preexec_fn=_ignore_sigint if ignore_sigint else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + (start_timeout_s or float("inf"))
        for line in process.stdout:  # serve's logs, then our banner once /ready answers 200
            if "whatsray is running locally" in line:
                break
            assert time.monotonic() < deadline, "whatsray local did not get ready"
        else:
            raise AssertionError(f"whatsray local exited with {process.wait()} before it was ready")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=SHUTDOWN_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
