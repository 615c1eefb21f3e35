"""`llama3med build` and `llama3med info` (`llama3med.cli.model_commands`): what `info` prints, and an unknown
preset or a damaged folder as one `error:` line (the traceback only with `--debug`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages


def test_unknown_preset_is_one_line_and_debug_shows_the_exception(tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", "no-such-preset", "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "unknown preset 'no-such-preset'" in result.output and "tiny" in result.output
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", "build", "no-such-preset", "--out", str(tmp_path / "m")])
    assert debug.exit_code != 0 and "Traceback" in debug.output and "unknown preset 'no-such-preset'" in debug.output


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


def test_info_describes_the_folder_from_its_config(tiny_model_dir: Path) -> None:
    from llama3med.model.configuration import Llama3MedConfig

    config = Llama3MedConfig.from_pretrained(tiny_model_dir)
    result = runner.invoke(app, ["info", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    lines = {line.strip("│ ").split("  ")[0]: " ".join(line.strip("│ ").split()) for line in result.output.splitlines()}
    assert f"{config.num_image_tokens} ({config.grid_size} x {config.grid_size})" in lines["visual tokens per image"]
    assert " / ".join(map(str, config.scales)) + f" (tile {config.tile_size})" in lines["scales (px)"]
    connector = f"{config.connector_type}: {config.connector_input_size} -> {config.text_config.hidden_size}"
    assert connector in lines["connector"] and "M" in lines["parameters: LLM"]


def test_an_8b_preset_needs_local_folders(tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", "llama3-med-8b-authors", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "needs --llm-path and --vision-path" in result.output
    result = runner.invoke(app, ["build", "llama3-med-8b-authors", "--out", str(tmp_path / "m"), "--llm-path", str(tmp_path / "no"),
                                 "--vision-path", str(tmp_path)])
    assert result.exit_code == 2 and "is not a folder" in result.output and not (tmp_path / "m").exists()
