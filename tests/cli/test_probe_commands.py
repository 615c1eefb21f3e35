"""`llama3med probe generate` (`llama3med.cli.probe_commands`): refused parameters are one error line with exit
code 2 and write nothing; `--force` redraws a complete probe. The probe's content is tested in
tests/experiments/probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "9"], "probe format must be one of [1, 2, 3], got 9"),
        (["--train", "0", "--test", "0"], "at least one image, got 0 and 0"),
        (["--size", "128"], "Invalid value for '--size': Input should be greater than or equal to 256"),
    ],
)
def test_refused_parameters_write_nothing(tmp_path: Path, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["probe", "generate", "--out", str(tmp_path / "p"), *options])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_force_redraws_a_complete_probe(tmp_path: Path) -> None:
    args = ["probe", "generate", "--out", str(tmp_path / "p"), "--train", "0", "--test", "1", "--size", "256"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"wrote {tmp_path / 'p'}: 0 train + 1 test images of 256 px" in first.output
    recorded = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert (recorded["n_train"], recorded["n_test"], recorded["size"]) == (0, 1, 256)
    assert "kept the complete probe already in" in runner.invoke(app, args).output
    assert f"wrote {tmp_path / 'p'}: 0 train + 1 test images" in runner.invoke(app, [*args, "--force"]).output
