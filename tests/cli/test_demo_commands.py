"""`llama3med demo` and `llama3med experiment` (`llama3med.cli.demo_commands`): the commands are registered with
their options checked before any work starts. The demo itself runs end to end in tests/experiments/test_demo.py."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.experiments.scales import ARMS

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's help and error panels do not wrap


def test_experiment_lists_its_commands() -> None:
    result = runner.invoke(app, ["experiment", "--help"])
    assert result.exit_code == 0 and "scales" in result.output and "linear-probe" in result.output


def test_an_unknown_arm_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["experiment", "linear-probe", "--out", str(tmp_path / "lp"), "--arms", "single-224,wide"])
    assert result.exit_code == 2 and "unknown arm(s) ['wide']" in result.output
    assert all(arm in result.output for arm in ARMS) and not (tmp_path / "lp").exists()


def test_step_and_image_counts_must_be_positive(tmp_path: Path) -> None:
    for option in ("--align-steps", "--instruct-steps", "--probe-train", "--probe-test", "--batch-size"):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--preset", "tiny", option, "0"])
        assert result.exit_code == 2 and f"Invalid value for '{option}': Input should be greater than or equal to 1" in result.output
    assert not (tmp_path / "demo").exists()
