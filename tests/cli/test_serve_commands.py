"""`llama3med ask | chat | predict | serve | web` (`llama3med.cli.serve_commands`): `ask` answers like the Python
API, image options reach the loader, and a bad image, window or model folder is refused before a model loads.
`predict` is tested in tests/serve/test_predict.py, `chat` in tests/serve/test_chat_pty.py, `serve` and `web` in
tests/serve."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.cli.serve_commands import check_model, image_options, settings_from_options
from llama3med.generation import GenerationSettings

runner = CliRunner()


def test_ask_prints_the_python_api_answer(tiny_model_dir, tiny_api, images) -> None:
    result = runner.invoke(app, ["ask", str(images["scan"]), "Is there a fracture?", "--model", str(tiny_model_dir), "--max-new-tokens", "14"])
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_api.chat(images["scan"], "Is there a fracture?", max_new_tokens=14) + "\n"


def test_ask_with_a_bad_image_names_the_file(tiny_model_dir, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = runner.invoke(app, ["ask", str(broken), "What?", "--model", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert "broken.png" in result.output


def test_ask_with_a_folder_that_is_no_model(tmp_path, images) -> None:
    result = runner.invoke(app, ["ask", str(images["scan"]), "What?", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no config.json" in result.output


def test_image_options_reach_the_loader(tiny_model_dir, tiny_api, tmp_path) -> None:
    import nibabel as nib
    import numpy as np

    from llama3med.io.images import load_image

    volume = np.random.default_rng(3).normal(50, 40, size=(48, 40, 6)).astype(np.float32)  # [x, y, slices]
    volume[..., 4] += 300  # slice 4 is much brighter: a different slice or window is a different image
    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    chosen = load_image(path, slice_index=4, window="300,200")
    assert np.asarray(chosen).tolist() != np.asarray(load_image(path)).tolist()

    result = runner.invoke(
        app, ["ask", str(path), "Which slice?", "--model", str(tiny_model_dir), "--slice", "4", "--window", "300,200", "--max-new-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_api.chat(chosen, "Which slice?", max_new_tokens=8) + "\n"

    bad = runner.invoke(app, ["ask", str(path), "Which slice?", "--model", str(tiny_model_dir), "--window", "sideways"])
    assert bad.exit_code == 2 and "invalid window" in bad.output


def test_command_line_options_become_settings() -> None:
    assert settings_from_options(32, 0.0, 1.0, [], None) == GenerationSettings(max_new_tokens=32)
    assert settings_from_options(8, 0.5, 0.9, ["END"], 2).stop == ["END"]
    assert settings_from_options(8, 1e-320, 1.0, [], None).temperature == 0.0  # below the sampling minimum: greedy


def test_a_nan_temperature_is_refused_with_a_usage_error(tiny_model_dir, images) -> None:
    result = runner.invoke(app, ["ask", str(images["scan"]), "What?", "--model", str(tiny_model_dir), "--temperature", "nan"])
    assert result.exit_code == 2 and "--temperature" in result.output and "Traceback" not in result.output


def test_image_options_are_checked_before_a_model_loads():
    assert image_options("lung", 2, None) == {"window": "lung", "frame": 2, "slice_index": None}
    assert image_options(None, None, 5) == {"window": None, "frame": None, "slice_index": 5}
    with pytest.raises(typer.BadParameter, match="invalid window 'sideways'"):
        image_options("sideways", None, None)


def test_check_model_names_what_the_folder_lacks(tiny_model_dir, tmp_path):
    check_model(tiny_model_dir)
    with pytest.raises(typer.BadParameter, match="does not exist"):
        check_model(tmp_path / "missing")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"base_model_name_or_path": null}')
    with pytest.raises(typer.BadParameter, match="does not name its base model"):
        check_model(tmp_path / "adapter")


def test_predict_refuses_a_missing_input_before_loading_the_model(tiny_model_dir, tmp_path):
    wide = CliRunner(env={"COLUMNS": "300"})  # rich's usage-error panel does not wrap the path
    result = wide.invoke(app, ["predict", "--input", str(tmp_path / "q.jsonl"), "--out", str(tmp_path / "a.jsonl"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 2 and "q.jsonl' does not exist" in result.output


def test_every_server_limit_has_a_serve_option() -> None:
    import dataclasses
    import inspect

    from llama3med.cli.serve_commands import serve
    from llama3med.serve.limits import ServerLimits

    options = inspect.signature(serve).parameters
    for field in dataclasses.fields(ServerLimits):
        name = "allow_text_only" if field.name == "require_image" else field.name  # the flag says it the other way round
        assert name in options, f"ServerLimits.{field.name} has no `llama3med serve` option"
        if field.name != "require_image":
            assert options[name].default == field.default, field.name
