"""The agents file of the platform soaks and tests: one echo agent on the scripted engine (no
model: they measure the platform), no classifier, and the double-texting policy they ask for
(its default quiet period and maximum wait)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

ECHO_AGENTS_YAML = """\
engines:
  scripted:
    engine: scripted
    mode: echo
router:
  default_agent: echo
  classifier: false
agents:
  - name: echo
    description: Echoes what the user says.
    system_prompt: Echo.
    engine: scripted
    double_texting: {double_texting}
"""


def write_echo_agents(
    path: Path, double_texting: Literal["coalesce", "enqueue", "reject", "interrupt"]
) -> Path:
    """The echo agents file, with `double_texting` as its policy, written to `path`."""
    path.write_text(ECHO_AGENTS_YAML.format(double_texting=double_texting))
    return path
