"""Releases: which version of the platform an actor belongs to (docs/cluster.md, "Upgrades").

Every platform actor is named `<name>@<release>`. The release is a digest of everything that
decides how the actors behave: the code, the settings and the files they load (agents, jobs,
templates). A `serve deploy` that changes any of these starts a new release, whose actors
take over from the old ones after those have drained (`actors/rollout.py`); a deploy that
changes nothing finds its own actors running and reuses them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import SecretStr

from whatsray.settings import Settings

SEPARATOR = "@"
DIGEST_CHARS = 12
_RELEASE = re.compile(rf"^[0-9a-f]{{{DIGEST_CHARS}}}$")


def code_digest(roots: Iterable[Path]) -> str:
    """A digest of every Python file under `roots` (files or folders), by relative path."""
    digest = hashlib.sha256()
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def release_id(settings: Settings, code: str) -> str:
    """The release of the platform these settings and this code make.

    Secrets count (a rotated access token must reach the outboxes), but only as part of the
    digest, which reveals nothing of them. A loaded file counts by its content, so an edited
    agents file is a new release even under the same path."""
    values = settings.model_dump(mode="python")
    described = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in values.items()
    }
    files = {str(path): _content(path) for path in _loaded_files(settings)}
    payload = json.dumps({"settings": described, "files": files}, sort_keys=True, default=str)
    digest = hashlib.sha256((code + "\0" + payload).encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def _loaded_files(settings: Settings) -> list[Path]:
    paths = [settings.agents_file, settings.jobs_file, settings.templates_file]
    paths += [overrides.templates_file for overrides in settings.numbers.values()]
    return [p for p in paths if p is not None]


def _content(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:  # the start reports a missing file with its own message
        return f"unreadable: {type(exc).__name__}"


def versioned(name: str, release: str) -> str:
    """`session-host-0` of release `3f2a...` -> `session-host-0@3f2a...`."""
    return f"{name}{SEPARATOR}{release}"


def split_versioned(name: str) -> tuple[str, str | None]:
    """`session-host-0@3f2a...` -> (`session-host-0`, `3f2a...`); an unversioned name (the
    local services, Serve's own actors) -> (name, None)."""
    base, sep, release = name.rpartition(SEPARATOR)
    if sep and _RELEASE.match(release):
        return base, release
    return name, None


def releases_running(names: Iterable[str]) -> dict[str, list[str]]:
    """The releases among actor `names`, each with its actors' base names."""
    found: dict[str, list[str]] = {}
    for name in names:
        base, release = split_versioned(name)
        if release is not None:
            found.setdefault(release, []).append(base)
    return found


# The order in which a release's actors hand over (actors/rollout.py): first what reads the
# inbox and starts turns, then what the turns call, then the outboxes (which finish the sends
# on the wire), the store last (every other actor writes to it while it drains).
RETIRE_ORDER: tuple[str, ...] = (
    "session-host",
    "scheduler",
    "agent",
    "router",
    "outbox",
    "store",
)


def retire_stage(base: str) -> int:
    """Where an actor of base name `base` retires in `RETIRE_ORDER` (unknown kinds go last but
    before the store: they may still write to it)."""
    for stage, prefix in enumerate(RETIRE_ORDER):
        if base == prefix or base.startswith(prefix + "-"):
            return stage
    return RETIRE_ORDER.index("store") - 1


def in_retire_order(bases: Mapping[str, str]) -> list[list[str]]:
    """`bases`: actor name -> base name. The names grouped by stage, in the order to retire."""
    stages: dict[int, list[str]] = {}
    for name, base in bases.items():
        stages.setdefault(retire_stage(base), []).append(name)
    return [sorted(stages[s]) for s in sorted(stages)]
