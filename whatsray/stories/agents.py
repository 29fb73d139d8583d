"""The agents the in-process platform runs for `whatsray test`: an agents file, optionally with
more engines (`--engines FILE`, a YAML mapping name -> engine spec, merged into `engines:`) and
every agent on one engine (`--engine NAME`, `AgentsConfig.with_engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from whatsray.agents.config import AgentsConfig, AgentsConfigError, parse_agents_config

__all__ = ["QUICK_QUIET_PERIOD_S", "story_agents"]

# Each user step is awaited until the platform is quiet, so there is never a second message to
# coalesce with: the double-texting wait only costs time. The in-process platform shortens it.
QUICK_QUIET_PERIOD_S = 0.05
QUICK_MAX_WAIT_S = 1.0


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentsConfigError(str(path), [f"cannot read the file ({exc})"]) from None
    except yaml.YAMLError as exc:
        raise AgentsConfigError(str(path), [f"not valid YAML ({exc})"]) from None


def story_agents(
    agents_file: str | Path,
    *,
    engines_file: str | Path | None = None,
    engine: str | None = None,
    quick: bool = True,
) -> AgentsConfig:
    """The agents file as the stories run it; an `AgentsConfigError` names what is wrong."""
    path = Path(agents_file)
    data = _yaml(path)
    if engines_file is not None:
        extra = _yaml(Path(engines_file))
        if not isinstance(extra, dict) or not extra:
            raise AgentsConfigError(
                str(engines_file), ["expected a mapping of engine names to specs"]
            )
        if isinstance(data, dict):
            data = {**data, "engines": {**(data.get("engines") or {}), **extra}}
    config = parse_agents_config(data, base_dir=path.resolve().parent, source=str(path))
    if engine is not None:
        config = config.with_engine(engine)
    if quick:
        agents = tuple(
            a.model_copy(
                update={
                    "double_texting": a.double_texting.model_copy(
                        update={
                            "quiet_period_s": min(
                                a.double_texting.quiet_period_s, QUICK_QUIET_PERIOD_S
                            ),
                            "max_wait_s": min(a.double_texting.max_wait_s, QUICK_MAX_WAIT_S),
                        }
                    )
                }
            )
            for a in config.agents
        )
        config = config.model_copy(update={"agents": agents})
    return config
