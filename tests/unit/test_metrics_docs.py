"""docs/metrics.md documents exactly the catalog: every metric with its type and labels, and no
`whatsray_*` name the catalog lacks."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.prometheus import metric_names
from whatsray.metrics import CATALOG

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(whatsray_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def table() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for name, kind, labels in _ROW.findall(DOC.read_text()):
        rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return rows


def test_every_catalog_metric_has_a_row_with_its_type_and_labels() -> None:
    rows = table()
    assert sorted(set(CATALOG) - set(rows)) == []
    for name, spec in CATALOG.items():
        assert rows[name] == (spec.kind, spec.labels), name


def test_the_page_names_no_metric_the_catalog_lacks() -> None:
    assert sorted(metric_names(DOC.read_text()) - set(CATALOG)) == []
    assert sorted(set(table()) - set(CATALOG)) == []


def test_the_row_parser_sees_a_wrong_label() -> None:
    row = "| `whatsray_turns_total` | counter | `agent` | Committed turns. |"
    assert _ROW.findall(row) == [("whatsray_turns_total", "counter", "`agent`")]
