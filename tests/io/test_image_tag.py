"""The image tag is defined once (`llama3med.io.image_tag`) and placed by one rule (`add_image_tag`)."""

from __future__ import annotations

import ast
from pathlib import Path

from llama3med.io.image_tag import IMAGE_TOKEN, add_image_tag

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "llama3med"


def docstring_nodes(tree: ast.Module) -> set[int]:
    """ids of the module's, classes' and functions' docstring constants (they may name the tag in prose)."""
    owners = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]
    return {
        id(owner.body[0].value)
        for owner in owners
        if owner.body and isinstance(owner.body[0], ast.Expr) and isinstance(owner.body[0].value, ast.Constant)
    }


def modules_spelling_the_tag() -> list[str]:
    """Package modules whose code (not docstrings or comments) holds a string constant containing the tag."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = docstring_nodes(tree)
        if any(
            isinstance(node, ast.Constant) and isinstance(node.value, str) and IMAGE_TOKEN in node.value
            and id(node) not in docstrings
            for node in ast.walk(tree)
        ):
            found.append(path.relative_to(PACKAGE_DIR).as_posix())
    return found


def test_the_tag_literal_lives_in_one_module() -> None:
    assert modules_spelling_the_tag() == ["io/image_tag.py"]


def test_the_scan_sees_tags_inside_f_strings() -> None:
    # The scan above must catch the hand-written insertions it replaced, f-strings included.
    tree = ast.parse('def f(q):\n    """Puts <image> first."""\n    return f"<image>\\n{q}"\n')
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    spelled = [n.value for n in constants if IMAGE_TOKEN in n.value and id(n) not in docstring_nodes(tree)]
    assert spelled == ["<image>\n"]


def test_add_image_tag_puts_the_tag_on_its_own_line_before_the_text() -> None:
    assert IMAGE_TOKEN == "<image>"
    assert add_image_tag("What is shown?") == "<image>\nWhat is shown?"
    assert add_image_tag("") == "<image>\n"
    assert add_image_tag("Describe.", tag="<|image|>") == "<|image|>\nDescribe."
