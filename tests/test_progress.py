"""Progress in logs (`llama3med.progress`): when the output is not a terminal, long commands print a plain progress
line when a task starts, at least every interval (also while one slow step runs) and when it ends."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.progress import INTERVAL_ENV, ProgressDisplay, TaskState, duration, progress_interval


def log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=100), buffer


def test_lines_keep_coming_during_one_slow_step() -> None:
    console, buffer = log_console()
    with ProgressDisplay(console, unit="questions", interval=0.05) as progress:
        task = progress.add_task("vqa-rad", total=4)
        progress.advance(task, 1)
        time.sleep(0.4)  # one slow batch: the heartbeat keeps reporting
        progress.advance(task, 3)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "vqa-rad: 0/4 questions (0%), 0s elapsed"
    assert sum(line.startswith("vqa-rad: 1/4 questions (25%)") for line in lines) >= 3
    assert "~" in next(line for line in lines if line.startswith("vqa-rad: 1/4"))  # time left, from the rate so far
    assert lines[-1].startswith("vqa-rad: 4/4 questions (100%)") and lines[-1].endswith("— done")


def test_sequential_tasks_report_only_the_current_one() -> None:
    console, buffer = log_console()
    with ProgressDisplay(console, unit="questions", interval=0.05, sequential=True) as progress:
        first, second = progress.add_task("vqa-rad", total=2), progress.add_task("slake", total=1, kept=0)
        time.sleep(0.15)
        progress.advance(first, 2)
        progress.update(second, advance=1, kept=1)
    lines = buffer.getvalue().splitlines()
    done_first = lines.index(next(line for line in lines if line.startswith("vqa-rad: 2/2")))
    assert not any(line.startswith("slake") for line in lines[:done_first])  # queued: not reported yet
    assert lines[done_first + 1].startswith("slake: 0/1 questions") and lines[-1].startswith("slake: 1/1")
    assert "kept 1" in lines[-1]


def test_a_terminal_gets_the_live_bar_and_no_lines() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with ProgressDisplay(console, interval=0.01) as progress:
        assert progress.live
        progress.advance(progress.add_task("answering", total=2), 2)
    assert "answering: " not in buffer.getvalue()


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    for name, colour in (("red.png", (200, 10, 10)), ("blue.png", (10, 10, 200))):
        Image.new("RGB", (40, 24), colour).save(tmp_path / "images" / name)
    records = [{"id": f"q{i}", "image": f"images/{'red' if i % 2 else 'blue'}.png", "question": "Is it normal?",
                "answer": "no", "answer_type": "CLOSED"} for i in range(4)]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_eval_and_predict_print_progress_lines_in_a_log(tiny_model_dir: Path, questions: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLAMA3MED_PROGRESS_SECONDS", "0.05")
    threads = torch.get_num_threads()
    runner = CliRunner(env={"COLUMNS": "200"})
    try:
        evaluated = runner.invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmarks", f"mine={questions}",
                                        "--out", str(tmp_path / "eval"), "--max-new-tokens", "3", "--batch-size", "2", "--threads", "1"])
        assert evaluated.exit_code == 0, evaluated.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert "mine: 0/4 questions (0%)" in evaluated.output
    assert any(line.startswith("mine: 4/4 questions (100%)") and line.endswith("done") for line in evaluated.output.splitlines())
    predicted = runner.invoke(app, ["predict", "--input", str(questions), "--out", str(tmp_path / "answers.jsonl"),
                                    "--model", str(tiny_model_dir), "--max-new-tokens", "3", "--batch-size", "2"])
    assert predicted.exit_code == 0, predicted.output
    assert any(line.startswith("answering: 4/4 questions (100%)") for line in predicted.output.splitlines())


def test_durations_and_the_interval_setting(monkeypatch) -> None:
    assert [duration(s) for s in (0, 44.6, 60, 725, 3600, 10_950)] == ["0s", "45s", "1m00s", "12m05s", "1h00m", "3h02m"]
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert progress_interval() == 30.0
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="LLAMA3MED_PROGRESS_SECONDS must be a number of seconds, got 'soon'"):
        progress_interval()


def test_a_line_has_counts_rate_time_left_and_fields() -> None:
    state = TaskState("slake", total=200, unit="questions", completed=50, fields={"kept": 3}, started=100.0)
    assert state.line(125.0) == "slake: 50/200 questions (25%), 25s elapsed, 2 questions/s, ~1m15s left, kept 3"
    state.completed, state.finished = 200, True
    assert state.line(200.0) == "slake: 200/200 questions (100%), 1m40s elapsed, 2 questions/s, kept 3 — done"
    assert TaskState("scan", None, "files").line(time.monotonic()).startswith("scan: 0 files, 0s elapsed")
