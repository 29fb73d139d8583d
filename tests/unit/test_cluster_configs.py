"""The cluster configs (docs/cluster.md).

`cluster.yaml` and `configs/cluster-onprem.yaml` pass the validation `ray up` runs and a broken
copy does not; what whatsray needs of them holds (HAProxy, the metrics port, no app Redis on 6379,
a GPU group from 0, a placement that matches the node types). `deploy/kuberay/rayservice.yaml`
has the shape KubeRay needs and serves exactly `configs/production.yaml`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from whatsray.placement import HEAD_NODE_RESOURCE, KINDS, parse_placement, resources_for
from whatsray.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / "cluster.yaml"
ONPREM = ROOT / "configs" / "cluster-onprem.yaml"
PRODUCTION = ROOT / "configs" / "production.yaml"
RAYSERVICE = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
STORE_VOLUME = ROOT / "deploy" / "kuberay" / "store-volume.yaml"
LAUNCHER_CONFIGS = [pytest.param(AWS, id="aws"), pytest.param(ONPREM, id="onprem")]

SETTING_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
# Read by serve_app.py, not a field of Settings.
ENV_NAMES = SETTING_NAMES | {"WHATSRAY_PLACEMENT"}
HAPROXY = ("RAY_SERVE_ENABLE_HA_PROXY=1", "RAY_SERVE_THROUGHPUT_OPTIMIZED=1")
APP_REDIS_ON_GCS_PORT = re.compile(r"rediss?://[^\s'\"]*:6379(?!\d)")
GCS_PORT_USES = re.compile(r"--port=6379(?!\d)|\$RAY_HEAD_IP:6379(?!\d)")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does with a config before it starts anything (commands._bootstrap_config,
    less the cloud's resource lookup, which needs credentials)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared: dict[str, Any] = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def commands(config: dict[str, Any], key: str) -> str:
    return "\n".join(config.get(key) or [])


def all_commands(config: dict[str, Any]) -> list[str]:
    keys = [k for k in config if k.endswith("_commands")]
    per_type = [
        command
        for node_type in (config.get("available_node_types") or {}).values()
        for command in node_type.get("worker_setup_commands") or []
    ]
    return [command for key in keys for command in config[key] or []] + per_type


def placement_in(text: str) -> str:
    found = set(re.findall(r"WHATSRAY_PLACEMENT='([^']*)'", text))
    assert len(found) == 1, f"one WHATSRAY_PLACEMENT expected, found {found}"
    return found.pop()


# --- Ray's cluster launcher configs ----------------------------------------------------------


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_ray_up_accepts_the_config(path: Path) -> None:
    prepared = ray_validate(load(path))
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c.update(max_worker=2), id="unknown-key"),
        pytest.param(lambda c: c.update(idle_timeout_minutes="ten"), id="wrong-type"),
        pytest.param(lambda c: c.update(head_start_ray_commands="ray start"), id="not-a-list"),
        pytest.param(lambda c: c["auth"].update(ssh_usr="ubuntu"), id="unknown-auth-key"),
    ],
)
def test_ray_up_refuses_a_broken_copy(path: Path, breakage: Any) -> None:
    config = load(path)
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(config)


def test_ray_refuses_a_fractional_custom_resource_on_a_node_type() -> None:
    # Why nodes offer `whatsray_worker: 1` and actors ask for 0.001 of it.
    config = load(AWS)
    config["available_node_types"]["cpu_worker"]["resources"] = {"whatsray_worker": 0.5}
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(config)


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_ray_starts_with_haproxy_and_a_fixed_metrics_port(path: Path) -> None:
    config = load(path)
    head = commands(config, "head_start_ray_commands")
    for variable in HAPROXY:
        assert variable in head
    assert "--metrics-export-port=8080" in head
    assert "--metrics-export-port=8080" in commands(config, "worker_start_ray_commands")


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_no_app_redis_on_ray_gcs_port(path: Path) -> None:
    assert not APP_REDIS_ON_GCS_PORT.findall(path.read_text())
    for command in all_commands(load(path)):
        assert "6379" not in GCS_PORT_USES.sub("", command), command


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_every_command_is_valid_bash(path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for command in all_commands(load(path)):
        checked = subprocess.run([bash, "-n", "-c", command], capture_output=True, text=True)
        assert checked.returncode == 0, f"{command}\n{checked.stderr}"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS)
def test_every_whatsray_variable_the_config_sets_is_a_real_setting(path: Path) -> None:
    text = "\n".join(all_commands(load(path)))
    assert set(re.findall(r"\b(WHATSRAY_[A-Z_]+)=", text)) <= ENV_NAMES


def test_the_gpu_group_scales_from_zero() -> None:
    node_types = load(AWS)["available_node_types"]
    gpu = {name: t for name, t in node_types.items() if t.get("resources", {}).get("GPU")}
    assert gpu, "cluster.yaml has no GPU node type"
    assert all(t["min_workers"] == 0 for t in gpu.values())


def test_the_dashboard_knows_prometheus_and_grafana() -> None:
    head = commands(load(AWS), "head_start_ray_commands")
    for variable in ("RAY_PROMETHEUS_HOST=", "RAY_GRAFANA_HOST=", "RAY_GRAFANA_IFRAME_HOST="):
        assert variable in head


def test_placement_keeps_the_platform_on_the_cpu_workers_and_the_store_on_the_head() -> None:
    config = load(AWS)
    head_text = commands(config, "head_start_ray_commands")
    worker_text = commands(config, "worker_start_ray_commands")
    assert placement_in(head_text) == placement_in(worker_text)  # the same on every node
    placement = parse_placement(placement_in(head_text))
    offered = {name: set(t["resources"]) for name, t in config["available_node_types"].items()}
    cpu_workers = {name for name, r in offered.items() if "GPU" not in r} - {"head"}
    assert cpu_workers
    for kind in KINDS - {"store", "local_services"}:
        wanted = set(resources_for(placement, kind, mode="cluster"))
        assert wanted, f"{kind} may land on the head"
        assert all(wanted <= offered[name] for name in cpu_workers), kind
        assert not wanted & (offered["head"] | offered["gpu_worker"]), kind
    assert resources_for(placement, "store", mode="cluster") == {HEAD_NODE_RESOURCE: 0.001}


def test_production_deployments_leave_their_actor_options_to_the_code() -> None:
    # Serve replaces the code's ray_actor_options whole with the config's: the ingress would
    # lose the resources WHATSRAY_PLACEMENT gives it and could land on the head.
    for app in load(PRODUCTION)["applications"]:
        for deployment in app.get("deployments", []):
            assert "ray_actor_options" not in deployment, deployment["name"]


# --- KubeRay ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    [service] = [d for d in yaml.safe_load_all(RAYSERVICE.read_text()) if d]
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    return dict(service)


def groups(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    found = {"head": cluster["headGroupSpec"]}
    found.update({g["groupName"]: g for g in cluster["workerGroupSpecs"]})
    return found


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return list(group["template"]["spec"]["containers"])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def custom_resources(group: dict[str, Any]) -> dict[str, float]:
    raw = group["rayStartParams"].get("resources")  # KubeRay's '"{...}"' form
    return json.loads(raw.strip('"').replace('\\"', '"')) if raw else {}


def test_the_rayservice_serves_exactly_the_production_config(rayservice: dict[str, Any]) -> None:
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == load(PRODUCTION)


def test_the_gcs_is_fault_tolerant_with_its_password_from_a_secret(
    rayservice: dict[str, Any],
) -> None:
    options = rayservice["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options["redisAddress"]
    assert options["redisPassword"]["valueFrom"]["secretKeyRef"]["name"]
    # One cluster at a time: a second head must never open the store's DuckDB file.
    assert rayservice["spec"]["upgradeStrategy"]["type"] == "None"


def test_a_head_a_cpu_group_and_a_gpu_group_from_zero(rayservice: dict[str, Any]) -> None:
    found = groups(rayservice)
    assert set(found) == {"head", "cpu", "gpu"}
    [gpu] = containers(found["gpu"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert found["gpu"]["minReplicas"] == 0
    assert found["cpu"]["minReplicas"] >= 1
    for group in found.values():
        assert group["rayStartParams"]["metrics-export-port"] == "8080"


def test_every_pod_gets_the_same_real_settings_haproxy_and_the_secret_files(
    rayservice: dict[str, Any],
) -> None:
    settings_per_pod = []
    for name, group in groups(rayservice).items():
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        for container in containers(group):
            env = env_of(container)
            assert {n for n in env if n.startswith("WHATSRAY_")} <= ENV_NAMES, name
            assert (env["RAY_SERVE_ENABLE_HA_PROXY"], env["RAY_SERVE_THROUGHPUT_OPTIMIZED"]) == (
                "1",
                "1",
            )
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "secret" in volumes[mounts[env["WHATSRAY_SECRETS_DIR"]]], name
            assert env["WHATSRAY_DATA_DIR"] in mounts, name
            settings_per_pod.append({n: v for n, v in env.items() if n.startswith("WHATSRAY_")})
    assert all(s == settings_per_pod[0] for s in settings_per_pod)
    assert not APP_REDIS_ON_GCS_PORT.findall(RAYSERVICE.read_text())


def test_the_placement_matches_the_groups_and_the_store_keeps_its_disk(
    rayservice: dict[str, Any],
) -> None:
    found = groups(rayservice)
    [head] = containers(found["head"])
    placement = parse_placement(env_of(head)["WHATSRAY_PLACEMENT"])
    for kind in KINDS - {"store", "local_services"}:
        wanted = set(resources_for(placement, kind, mode="cluster"))
        assert wanted and wanted <= set(custom_resources(found["cpu"])), kind
        assert not wanted & set(custom_resources(found["gpu"]) | custom_resources(found["head"]))
    volumes = {v["name"]: v for v in found["head"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in head["volumeMounts"]}
    claim = volumes[mounts[env_of(head)["WHATSRAY_DATA_DIR"]]]["persistentVolumeClaim"]
    assert claim["claimName"] == load(STORE_VOLUME)["metadata"]["name"]
