"""What `whatsray test` prints, and its JUnit XML (one testcase per story) for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from whatsray.stories.runner import StoryResult

__all__ = ["format_results", "junit_xml", "summary_line", "write_junit"]


def format_results(results: Sequence[StoryResult]) -> list[str]:
    lines = []
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        lines.append(f"{mark}  {result.story.file}: {result.story.name} ({result.seconds:.1f} s)")
        lines.extend(f"      {failure.describe()}" for failure in result.failures)
    return lines


def summary_line(results: Sequence[StoryResult], seconds: float) -> str:
    failed = sum(1 for r in results if not r.passed)
    return (
        f"{len(results)} {'story' if len(results) == 1 else 'stories'}: "
        f"{len(results) - failed} passed, {failed} failed ({seconds:.1f} s)"
    )


def junit_xml(results: Sequence[StoryResult], seconds: float) -> ET.ElementTree[ET.Element]:
    failed = sum(1 for r in results if not r.passed)
    suites = ET.Element("testsuites", tests=str(len(results)), failures=str(failed))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="whatsray stories",
        tests=str(len(results)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=result.story.file,
            name=result.story.name,
            time=f"{result.seconds:.3f}",
        )
        if not result.passed:
            details = [f.describe() for f in result.failures]
            failure = ET.SubElement(
                case, "failure", message="; ".join(details), type="StoryFailure"
            )
            failure.text = "\n".join(details)
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(path: Path, results: Sequence[StoryResult], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(results, seconds).write(path, encoding="utf-8", xml_declaration=True)
