"""`llama3med.io` is the ground floor: its modules import nothing from llama3med outside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llama3med.io

IO_FOLDER = Path(llama3med.io.__file__).parent


def llama3med_imports(path: Path) -> set[str]:
    """Absolute names of the llama3med modules `path` imports (at the top or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module or "")
    return {name for name in names if name.split(".")[0] == "llama3med"}


def test_io_modules_import_only_io() -> None:
    modules = sorted(IO_FOLDER.glob("*.py"))
    assert len(modules) >= 10
    outside = {path.name: sorted(n for n in llama3med_imports(path) if not n.startswith("llama3med.io")) for path in modules}
    assert {name: found for name, found in outside.items() if found} == {}


def test_importing_every_io_module_loads_nothing_else_of_llama3med() -> None:
    names = [f"llama3med.io.{path.stem}" for path in sorted(IO_FOLDER.glob("*.py")) if path.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('llama3med') and not m.startswith('llama3med.io'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["llama3med"]
