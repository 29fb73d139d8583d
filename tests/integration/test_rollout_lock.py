"""The rollout lock (actors/rollout.py) on a real Valkey: one `Platform.start` at a time, held
as long as its holder lives, and given up by one that dies."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from actors import rollout


async def test_starts_take_turns_and_a_long_one_keeps_the_lock(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout, "LOCK_TIMEOUT_S", 0.3)  # renewed every 0.1 s
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def start(name: str) -> None:
        async with rollout.rollout_lock(valkey_url):
            inside.append(name)
            overlaps.append(tuple(inside))
            await asyncio.sleep(1.0)  # more than three lock timeouts: only renewal keeps it
            inside.remove(name)

    await asyncio.gather(start("a"), start("b"), start("c"))
    assert sorted(overlaps) == [("a",), ("b",), ("c",)]


async def test_a_holder_killed_mid_rollout_holds_the_next_start_up_for_one_timeout(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout, "LOCK_TIMEOUT_S", 1.0)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, valkey_url, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"holding\n"
    holder.kill()  # SIGKILL: no release, no renewal
    await holder.wait()
    async with asyncio.timeout(10):
        async with rollout.rollout_lock(valkey_url):
            pass


ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import asyncio, sys
from actors import rollout
rollout.LOCK_TIMEOUT_S = 1.0
async def main():
    async with rollout.rollout_lock(sys.argv[1]):
        print("holding", flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""
