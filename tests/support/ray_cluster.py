"""A multi-node Ray cluster simulated on this machine (`ray.cluster_utils.Cluster`: a head and
worker nodes, each its own raylet), and where the actors run on it.

Every node shares this machine's cores and loopback: the Serve proxy runs on the head only
(`tests/support/ray_serve.py`, `address=`), and nodes are told apart by their custom resources.
Used by `tests/integration/test_node_loss_ray.py` and `benchmarks/multinode.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MiB = 1024**2
OBJECT_STORE_BYTES = 80 * MiB  # per node: three nodes fit a small machine's memory


def start_cluster(
    worker_resources: Sequence[Mapping[str, float]],
    *,
    head_resources: Mapping[str, float],
    node_cpus: float = 1,
    system_config: Mapping[str, Any] | None = None,
) -> Any:
    """A head node (custom resources `head_resources`) and one worker node per entry of
    `worker_resources`, all registered; no dashboard. `system_config` goes to the head (Ray's
    `_system_config`: the GCS reads it, e.g. how fast a dead node is detected). The caller
    shuts it down (`cluster.shutdown()`), after `ray.shutdown()`."""
    from ray.cluster_utils import Cluster

    common: dict[str, Any] = {"num_cpus": node_cpus, "object_store_memory": OBJECT_STORE_BYTES}
    head: dict[str, Any] = {
        **common,
        "resources": dict(head_resources),
        "include_dashboard": False,
        "_system_config": dict(system_config or {}),
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for resources in worker_resources:
        cluster.add_node(**common, resources=dict(resources))
    cluster.wait_for_nodes()
    return cluster


def actors_by_node() -> dict[str, list[str]]:
    """Node id (hex) -> the actors on it that are not dead (by name; unnamed ones by class),
    from the GCS's actor table (no dashboard needed). An actor being restarted is listed on
    the node it last ran on."""
    import ray

    found: dict[str, list[str]] = {}
    for actor in ray._private.state.actors().values():
        if actor.get("State") == "DEAD":
            continue
        node = actor.get("Address", {}).get("NodeID", "")
        found.setdefault(node, []).append(actor.get("Name") or actor.get("ActorClassName", "?"))
    return found


def actor_states(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Each platform actor's state (ALIVE, RESTARTING...) and the node id it runs on (the last
    one while it is not alive), looked up by its name (`serve_app.find_actor`)."""
    import ray

    import serve_app

    states: dict[str, tuple[str, str]] = {}
    for name in names:
        actor_id = serve_app.find_actor(name)._actor_id.hex()
        info = ray._private.state.actors(actor_id=actor_id)
        states[name] = (info.get("State", "?"), info.get("Address", {}).get("NodeID", ""))
    return states
