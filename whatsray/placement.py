"""Where the platform's actors run on a cluster: `WHATSRAY_PLACEMENT` read into Ray resources.

The actors and the ingress reserve no CPU (`num_cpus=0`), so Ray may put them on any node, the
head included, unless they ask for a custom resource. `WHATSRAY_PLACEMENT` is a JSON object of
the custom resources each actor kind asks for, e.g.
`{"default": {"whatsray_worker": 0.001}, "session_host": [{"w0": 0.01}, {"w1": 0.01}]}`.

For an actor of `kind` (session host `p` and agent worker `i` pass their index), the first rule
that applies decides (docs/cluster.md, "Placement"):
1. the kind's own entry; a list spreads the kind: entry `index % len`; `{}` means anywhere;
2. in cluster mode, the store goes to the head node (Ray gives the head the resource
   `node:__internal_head__`), where its DuckDB file lives;
3. the `default` entry (cluster.yaml uses it to keep everything else off the head);
4. nothing: anywhere.

A malformed value is a `PlacementError` naming the variable and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_ENTRY",
    "HEAD_NODE_RESOURCE",
    "KINDS",
    "PLACEMENT_ENV",
    "Placement",
    "PlacementError",
    "parse_placement",
    "resources_for",
]

PLACEMENT_ENV = "WHATSRAY_PLACEMENT"
KINDS = frozenset(
    {
        "store",
        "outbox",
        "scheduler",
        "router",
        "agent_worker",
        "session_host",
        "local_services",
        "ingress",
    }
)
DEFAULT_ENTRY = "default"
# Ray's `ray._common.constants.HEAD_NODE_RESOURCE_NAME` (1.0 on the head node only); whatsray/
# does not import Ray, so tests/unit/test_placement.py checks the two agree.
HEAD_NODE_RESOURCE = "node:__internal_head__"
_HEAD_SHARE = 0.001  # a sliver: the head holds 1.0, and Serve's controller takes 0.001 too

Resources = dict[str, float]
Placement = dict[str, list[Resources]]
"""Kind (or `default`) -> its entries; one entry unless the kind is spread."""


class PlacementError(ValueError):
    """`WHATSRAY_PLACEMENT` is not what it must be; the message says what is wrong."""


def parse_placement(text: str | None) -> Placement:
    """The placement that `text` (the variable's value; unset or blank: none) asks for."""
    if text is None or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlacementError(f"{PLACEMENT_ENV} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PlacementError(f"{PLACEMENT_ENV} must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KINDS - {DEFAULT_ENTRY})
    if unknown:
        known = ", ".join(sorted(KINDS | {DEFAULT_ENTRY}))
        raise PlacementError(f"{PLACEMENT_ENV}: unknown kind(s) {unknown}; known: {known}")
    return {kind: _entries(kind, value) for kind, value in raw.items()}


def resources_for(
    placement: Mapping[str, list[Resources]], kind: str, index: int = 0, *, mode: str = "local"
) -> Resources:
    """The custom resources an actor of `kind` asks for (rules in the module doc)."""
    entries = placement.get(kind)
    if entries is None and kind == "store" and mode == "cluster":
        return {HEAD_NODE_RESOURCE: _HEAD_SHARE}
    if entries is None:
        entries = placement.get(DEFAULT_ENTRY)
    if not entries:
        return {}
    return dict(entries[index % len(entries)])


def _entries(kind: str, value: Any) -> list[Resources]:
    where = f"{PLACEMENT_ENV}[{kind!r}]"
    if isinstance(value, dict):
        return [_resources(where, value)]
    if isinstance(value, list) and value:
        return [_resources(f"{where}[{i}]", entry) for i, entry in enumerate(value)]
    raise PlacementError(f"{where} must be an object of resources or a non-empty list of them")


def _resources(where: str, value: Any) -> Resources:
    if not isinstance(value, dict):
        raise PlacementError(f"{where} must be an object of resources, got {value!r}")
    resources: Resources = {}
    for name, amount in value.items():
        is_number = isinstance(amount, int | float) and not isinstance(amount, bool)
        if not is_number or amount <= 0:
            raise PlacementError(f"{where}[{name!r}] must be a positive number, got {amount!r}")
        resources[str(name)] = float(amount)
    return resources
