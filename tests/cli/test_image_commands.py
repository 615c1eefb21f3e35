"""`llama3med inspect-image` and `llama3med anonymize` (`llama3med.cli.image_commands`): output names, the key file,
what `inspect-image` prints, and refused options. De-identification itself is tested in tests/io/test_anonymize.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from llama3med.cli.image_commands import KEY_BYTES, _load_or_create_key, _output_name
from llama3med.cli.main import app

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages


def test_output_names_never_reuse_the_source_name() -> None:
    assert _output_name(Path("/data/scan.dcm")) == "scan.inspect.png"
    assert _output_name(Path("brain.nii.gz")) == "brain.inspect.png"
    assert _output_name(Path("IM000001")) == "IM000001.inspect.png"
    assert _output_name(Path("photo.png")) == "photo.inspect.png"


def test_the_key_file_is_created_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "anon.key"
    key = _load_or_create_key(path)
    assert len(key) == KEY_BYTES and os.stat(path).st_mode & 0o777 == 0o600
    assert _load_or_create_key(path) == key and path.read_text() == key.hex() + "\n"
    path.write_text("not hex")
    with pytest.raises(typer.BadParameter, match="not a hex key written by `llama3med anonymize`"):
        _load_or_create_key(path)


def test_inspect_image_writes_the_loaded_image_and_says_what_was_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "depth.png")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect-image", "depth.png", "--window", "32768,65536"])
    assert result.exit_code == 0, result.output
    assert "format: PNG" in result.output and "window: custom (centre 32768, width 65536)" in result.output
    assert "output: depth.inspect.png (2 x 2, RGB)" in result.output
    written = np.asarray(Image.open(tmp_path / "depth.inspect.png"))
    np.testing.assert_array_equal(written[..., 0], [[0, 4], [117, 255]])  # 255 v / 65536, rounded


def test_inspect_image_limits_and_bad_files_are_one_error_line(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["inspect-image", str(tmp_path / "a.png"), "--out", str(tmp_path / "o.png"), "--max-pixels", "399"])
    assert result.exit_code == 1 and "20 x 20 = 400 pixels exceeds the limit of 399 pixels" in result.output
    assert not (tmp_path / "o.png").exists()
    bad_window = runner.invoke(app, ["inspect-image", str(tmp_path / "a.png"), "--window", "lungs"])
    assert bad_window.exit_code == 1 and "invalid window 'lungs'" in bad_window.output


def test_anonymize_refuses_a_bad_key_file_and_an_output_inside_the_source(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (tmp_path / "bad.key").write_text("xyz")
    result = runner.invoke(app, ["anonymize", str(source), str(tmp_path / "out"), "--key-file", str(tmp_path / "bad.key")])
    assert result.exit_code == 2 and "not a hex key" in result.output
    inside = runner.invoke(app, ["anonymize", str(source), str(source / "out")])
    assert inside.exit_code == 2 and "Traceback" not in inside.output
