"""`WHATSRAY_PLACEMENT` into Ray resources (whatsray/placement.py): a kind's own entry, lists that
spread a kind, the `default` entry, the store on the head node in cluster mode, clear errors."""

from __future__ import annotations

import json

import pytest

from whatsray.placement import (
    HEAD_NODE_RESOURCE,
    KINDS,
    PlacementError,
    parse_placement,
    resources_for,
)

CLUSTER_YAML_PLACEMENT = json.dumps({"default": {"whatsray_worker": 0.001}})


def test_the_head_resource_is_the_one_ray_gives_the_head_node() -> None:
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME

    assert HEAD_NODE_RESOURCE == HEAD_NODE_RESOURCE_NAME


def test_unset_asks_for_nothing_locally_and_pins_only_the_store_on_a_cluster() -> None:
    for text in (None, "", "  "):
        placement = parse_placement(text)
        assert all(resources_for(placement, kind) == {} for kind in KINDS)
        assert resources_for(placement, "store", mode="cluster") == {HEAD_NODE_RESOURCE: 0.001}
        assert resources_for(placement, "ingress", mode="cluster") == {}
        assert resources_for(placement, "session_host", 3, mode="cluster") == {}


def test_default_keeps_every_kind_but_the_store_off_the_head_on_a_cluster() -> None:
    placement = parse_placement(CLUSTER_YAML_PLACEMENT)
    for kind in KINDS - {"store"}:
        assert resources_for(placement, kind, mode="cluster") == {"whatsray_worker": 0.001}
    assert resources_for(placement, "store", mode="cluster") == {HEAD_NODE_RESOURCE: 0.001}
    # Locally there is no head to pin to: the default applies to the store too.
    assert resources_for(placement, "store") == {"whatsray_worker": 0.001}


def test_the_store_goes_where_the_variable_says_even_on_a_cluster() -> None:
    placement = parse_placement('{"store": {"disk_node": 0.01}, "default": {"w": 0.001}}')
    assert resources_for(placement, "store", mode="cluster") == {"disk_node": 0.01}
    anywhere = parse_placement('{"store": {}, "default": {"w": 0.001}}')
    assert resources_for(anywhere, "store", mode="cluster") == {}


def test_a_list_spreads_a_kind_by_index_and_other_kinds_fall_back_to_default() -> None:
    placement = parse_placement(
        '{"session_host": [{"w0": 0.01}, {"w1": 0.01}], "default": {"any_worker": 0.001}}'
    )
    hosts = [resources_for(placement, "session_host", p, mode="cluster") for p in range(5)]
    assert hosts == [{"w0": 0.01}, {"w1": 0.01}, {"w0": 0.01}, {"w1": 0.01}, {"w0": 0.01}]
    assert resources_for(placement, "outbox", mode="cluster") == {"any_worker": 0.001}


def test_the_result_is_a_copy_the_caller_may_change() -> None:
    placement = parse_placement('{"router": {"w": 0.5}}')
    resources_for(placement, "router")["w"] = 9.0
    assert resources_for(placement, "router") == {"w": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{store: 1}", "WHATSRAY_PLACEMENT is not JSON"),
        ("[1, 2]", "WHATSRAY_PLACEMENT must be a JSON object, got list"),
        ('{"sesion_host": {}}', r"unknown kind\(s\) \['sesion_host'\]; known: agent_worker"),
        ('{"store": "head"}', r"WHATSRAY_PLACEMENT\['store'\] must be an object"),
        ('{"session_host": []}', "non-empty list"),
        ('{"session_host": [{"w0": 1}, 2]}', r"\['session_host'\]\[1\] must be an object"),
        ('{"outbox": {"w": "0.1"}}', r"\['outbox'\]\['w'\] must be a positive number, got '0.1'"),
        ('{"outbox": {"w": 0}}', "must be a positive number, got 0"),
        ('{"outbox": {"w": true}}', "must be a positive number, got True"),
    ],
)
def test_a_bad_value_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        parse_placement(text)
