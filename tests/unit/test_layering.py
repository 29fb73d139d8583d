"""The core package `whatsray/` never imports Ray, directly or indirectly.

docs/architecture.md, section 4, habit 1.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "whatsray"


def _imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_module_in_whatsray_imports_ray() -> None:
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(m == "ray" or m.startswith("ray.") for m in _imported_modules(path.read_text()))
    ]
    assert offenders == []


def test_the_check_catches_an_import_of_ray() -> None:
    assert "ray.serve" in _imported_modules("import os\nfrom ray.serve import deployment\n")
    assert "ray" in _imported_modules("def f():\n    import ray\n")


def test_importing_all_of_whatsray_does_not_load_ray() -> None:
    # A fresh interpreter: catches Ray arriving through any transitive import.
    modules = sorted(
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py"  # running it would start the CLI
    )
    code = "import importlib, sys\n"
    code += f"for m in {modules!r}: importlib.import_module(m)\n"
    code += "sys.exit(3 if 'ray' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
