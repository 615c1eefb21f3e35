"""Mistakes a user makes get one `error:` line and a non-zero exit, never a traceback; `--debug` shows it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.common import ErrorReportingGroup, describe_exception, set_debug
from llama3med.cli.main import app
from llama3med.extras import extras_by_package

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages
SHIPPED_8B_RECIPES = ["llama3-med-8b-align", "llama3-med-8b-instruct", "llama3-med-8b-instruct-lora"]


@pytest.fixture(autouse=True)
def no_debug():
    """Each test starts without --debug (the flag is process state set by the main command)."""
    set_debug(False)
    yield
    set_debug(False)


def test_unknown_preset_is_one_line_and_debug_shows_the_exception(tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", "no-such-preset", "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "unknown preset 'no-such-preset'" in result.output and "tiny" in result.output
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", "build", "no-such-preset", "--out", str(tmp_path / "m")])
    assert debug.exit_code != 0 and "Traceback" in debug.output and "unknown preset 'no-such-preset'" in debug.output


def test_an_unexpected_exception_is_one_line_unless_debug() -> None:
    mini = typer.Typer(cls=ErrorReportingGroup)

    @mini.callback()
    def options(debug: bool = typer.Option(False, "--debug")) -> None:
        set_debug(debug)

    @mini.command()
    def broken() -> None:
        {}["missing"]

    result = runner.invoke(mini, ["broken"])
    assert result.exit_code == 1
    assert "error: KeyError: 'missing'" in result.output and "--debug" in result.output and "Traceback" not in result.output
    assert isinstance(runner.invoke(mini, ["--debug", "broken"]).exception, KeyError)


@pytest.mark.parametrize("recipe", SHIPPED_8B_RECIPES)
def test_shipped_8b_recipes_name_the_extra_for_deepspeed(recipe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    monkeypatch.delenv("LLAMA3MED_DATA_ROOT", raising=False)
    result = runner.invoke(app, ["train", recipe])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "needs the optional package `deepspeed`" in result.output and "pip install 'llama3med[gpu]'" in result.output
    assert "training.deepspeed=null" in result.output  # the other way out


def test_missing_optional_modules_name_their_extra() -> None:
    assert extras_by_package()["deepspeed"] == ("gpu",) and extras_by_package()["fastapi"] == ("serve",)
    message = describe_exception(ModuleNotFoundError("No module named 'fastapi'", name="fastapi"))
    assert "`fastapi`" in message and "pip install 'llama3med[serve]'" in message
    assert "llama3med[eval]' or 'llama3med[instruct]" in describe_exception(ModuleNotFoundError("x", name="openai"))


def test_unknown_recipe_lists_the_shipped_ones() -> None:
    result = runner.invoke(app, ["train", "no-such-recipe"])
    assert result.exit_code == 2 and "tiny-align" in result.output and "Traceback" not in result.output


def damaged_copy(tiny_model_dir: Path, tmp_path: Path, damage: str) -> Path:
    folder = tmp_path / damage
    shutil.copytree(tiny_model_dir, folder)
    if damage == "no-weights":
        (folder / "model.safetensors").unlink()
    elif damage == "truncated-weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif damage == "bad-config":
        (folder / "config.json").write_text("{ not json")
    return folder


@pytest.mark.parametrize(
    ("damage", "says"),
    [("no-weights", "no weights"), ("truncated-weights", "cannot be loaded"), ("bad-config", "cannot be read as JSON")],
)
def test_damaged_model_folders_are_one_line(tiny_model_dir: Path, tmp_path: Path, damage: str, says: str) -> None:
    folder = damaged_copy(tiny_model_dir, tmp_path, damage)
    image = tmp_path / "scan.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 20, 20)).save(image)
    for args in (["ask", str(image), "What?", "--model", str(folder)], ["info", str(folder)]):
        if args[0] == "info" and damage == "truncated-weights":
            continue  # info reads only the config
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, (args, result.output)


def test_an_adapter_config_without_a_base_path_is_one_line(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": None}))
    result = runner.invoke(app, ["info", str(adapter)])
    assert result.exit_code == 2 and "does not name its base model" in result.output
