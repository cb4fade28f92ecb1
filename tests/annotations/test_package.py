# No ``from __future__ import annotations`` here: it binds the name ``annotations``, which
# type checkers then confuse with this package.
import ast
import subprocess
import sys
import types
from pathlib import Path

import annotations as package
from annotations import measure as measure_module
from annotations import schema as schema_module

PACKAGE = Path(package.__file__).parent


def test_the_package_never_imports_consultd() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "consultd" for n in names), path
    code = (
        "import sys, annotations; assert not [m for m in sys.modules if m.startswith('consultd')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


def test_explicit_reexports_and_module_names() -> None:
    assert isinstance(package.measure, types.ModuleType)
    assert isinstance(package.schema, types.ModuleType)
    for name in [*schema_module.__all__, *measure_module.__all__]:
        if name != "measure":
            assert getattr(package, name) is getattr(
                schema_module if name in schema_module.__all__ else measure_module, name
            )
    assert (PACKAGE / "py.typed").exists() and (PACKAGE / "SCHEMA.md").exists()
