"""`llama3med train` and `llama3med merge` (`llama3med.cli.train_commands`): a recipe or adapter that cannot be
used is one `error:` line with exit code 2. Training runs through the command are in tests/train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages


SHIPPED_8B_RECIPES = ["llama3-med-8b-align", "llama3-med-8b-instruct", "llama3-med-8b-instruct-lora"]


@pytest.mark.parametrize("recipe", SHIPPED_8B_RECIPES)
def test_shipped_8b_recipes_name_the_extra_for_deepspeed(recipe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    monkeypatch.delenv("LLAMA3MED_DATA_ROOT", raising=False)
    result = runner.invoke(app, ["train", recipe])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "needs the optional package `deepspeed`" in result.output and "pip install 'llama3med[gpu]'" in result.output
    assert "training.deepspeed=null" in result.output  # the other way out


def test_unknown_recipe_lists_the_shipped_ones() -> None:
    result = runner.invoke(app, ["train", "no-such-recipe"])
    assert result.exit_code == 2 and "tiny-align" in result.output and "Traceback" not in result.output


def test_merge_rejects_a_folder_that_is_not_an_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["merge", str(tiny_model_dir), str(tmp_path / "out")])
    assert outcome.exit_code == 2 and "is not a LoRA adapter folder" in outcome.output


def test_a_bad_override_and_a_missing_adapter_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "tiny-align", "epochs=3"])
    assert result.exit_code == 2 and "error: " in result.output and "unknown key(s) ['epochs']" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["merge", str(tmp_path / "nothing"), str(tmp_path / "out")])
    assert missing.exit_code == 2 and "does not exist" in missing.output and not (tmp_path / "out").exists()
