"""`whatsray test STORIES...`: conversation tests (docs/stories.md).

By default the stories run against a platform started in this process (no Ray, no Redis to
install: an embedded Valkey, a temporary DuckDB, the emulator, one simulated clock); with `--url`
against a running whatsray, through its emulator and admin API. Exit code 0: all passed,
1: a story failed, 2: bad input (a story file, the agents file, a flag) and nothing ran.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from whatsray.agents.config import AgentsConfigError
from whatsray.cli.chat import resolve_emulator_url
from whatsray.cli.connection import admin_api
from whatsray.in_process import in_process_platform
from whatsray.outbox.templates import TemplatesConfig, load_templates
from whatsray.settings import SettingsError
from whatsray.stories.agents import story_agents
from whatsray.stories.model import Story, StoryFileError, load_stories
from whatsray.stories.report import format_results, summary_line, write_junit
from whatsray.stories.runner import StoryResult, run_stories
from whatsray.stories.target import HttpTarget, TargetError, in_process_target, poll_quiet

__all__ = ["add_test_commands", "story_users"]

DEFAULT_AGENTS = Path("configs/agents.yaml")


def add_test_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test",
        help="run conversation stories (YAML) against the bot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stories", nargs="+", help="story files, or folders of *.yaml files")
    parser.add_argument(
        "--agents", type=Path, default=DEFAULT_AGENTS, help="agents file (in-process)"
    )
    parser.add_argument(
        "--engines", type=Path, help="a YAML file of more engines for --engine (in-process)"
    )
    parser.add_argument(
        "--engine", help="run every agent (and the classifier) on this engine (in-process)"
    )
    parser.add_argument(
        "--templates",
        type=Path,
        help="templates file (in-process; default: templates.yaml beside the agents file)",
    )
    parser.add_argument("--junit", type=Path, help="write JUnit XML here")
    parser.add_argument("--url", help="a running whatsray's base URL (its admin API)")
    parser.add_argument("--token", help="admin token for --url (default: as `whatsray status`)")
    parser.add_argument(
        "--emulator-url", help="the running emulator (--url; default: as `whatsray chat`)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="--url: seconds without a new message that count as quiet (default 1)",
    )
    parser.set_defaults(func=_run)


def story_users(count: int, *, salt: int = 0) -> list[str]:
    """A fresh user number per story: `1555` + 3 digits of `salt` + the story's index."""
    return [f"1555{salt % 1000:03d}{index:04d}" for index in range(1, count + 1)]


def _templates(args: argparse.Namespace) -> TemplatesConfig | None:
    path = args.templates or args.agents.parent / "templates.yaml"
    if args.templates is None and not path.exists():
        return None
    return load_templates(path)


def _run(args: argparse.Namespace) -> int:
    platform_log = logging.getLogger("whatsray")
    level = platform_log.level
    if not getattr(args, "verbose", False):  # the platform's INFO lines would bury the results
        platform_log.setLevel(logging.WARNING)
    try:
        return _run_stories(args)
    finally:
        platform_log.setLevel(level)  # a caller of `main` (pytest) keeps its own


def _run_stories(args: argparse.Namespace) -> int:
    try:
        stories = load_stories(args.stories)
        if args.url is not None:
            timed = [
                (s, i)
                for s in stories
                for i, step in enumerate(s.steps, 1)
                if step.kind in ("wait", "pause")
            ]
            if timed:
                story, index = timed[0]
                raise StoryFileError(
                    f"{story.file}: story {story.name!r}, step {index}: a wait needs simulated"
                    " time, which only the in-process platform has (drop --url)"
                )
            config = None
            templates = None
        else:
            config = story_agents(args.agents, engines_file=args.engines, engine=args.engine)
            templates = _templates(args)
    except (StoryFileError, AgentsConfigError, SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if config is None:
            results = asyncio.run(_against_url(args, stories))
        else:
            results = asyncio.run(_in_process(config, templates, stories))
    except (TargetError, SettingsError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    for line in format_results(results):
        print(line)
    print(summary_line(results, seconds))
    if args.junit is not None:
        write_junit(args.junit, results, seconds)
    return 0 if all(r.passed for r in results) else 1


async def _in_process(
    config: Any, templates: TemplatesConfig | None, stories: list[Story]
) -> list[StoryResult]:
    async with in_process_platform(config, templates=templates) as platform:
        return await run_stories(in_process_target(platform), stories, story_users(len(stories)))


async def _against_url(args: argparse.Namespace, stories: list[Story]) -> list[StoryResult]:
    url, token = admin_api(args.url, args.token)
    emulator_url = resolve_emulator_url(args.emulator_url, os.environ)
    async with (
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as emulator,
        httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as admin,
    ):
        config = await emulator.get("/emulator/config")
        if config.status_code != 200:
            raise TargetError(f"no emulator at {emulator_url}: {config.status_code}")
        pnid = str(config.json()["phone_numbers"][0]["id"])
        target: HttpTarget

        async def settle(user: str) -> None:
            await poll_quiet(target, user, settle_s=args.settle)

        target = HttpTarget(emulator=emulator, admin=admin, phone_number_id=pnid, settle=settle)
        salt = int(time.time()) % 1000  # a fresh number per run: earlier runs left history
        return await run_stories(target, stories, story_users(len(stories), salt=salt))
