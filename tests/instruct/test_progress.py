"""Progress per generator (`llama3med.instruct.progress`): kept / rejected / failed counts in the log lines."""

from __future__ import annotations

from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.progress import GenerationProgress
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.results import GeneratorTally, Task

CLAUDE = GeneratorSpec("claude", "anthropic", "c")
LLAMA = GeneratorSpec("llama", "openai", "l")


def tasks(spec: GeneratorSpec, count: int) -> list[Task]:
    return [Task(CaptionRecord(f"r{i}", f"r{i}.png", "c"), spec, "open_qa") for i in range(count)]


def test_one_line_per_generator_with_its_counts(capsys, monkeypatch):
    monkeypatch.setenv("LLAMA3MED_PROGRESS_SECONDS", "600")  # no heartbeat lines in this short test
    with GenerationProgress({"claude": tasks(CLAUDE, 2), "llama": tasks(LLAMA, 1)}) as progress:
        progress.advance("claude", GeneratorTally(accepted=1))
        progress.advance("claude", GeneratorTally(accepted=1, rejected=1))
        progress.advance("llama", GeneratorTally(failed=1))
    lines = capsys.readouterr().err.splitlines()  # not a terminal: plain lines on stderr
    assert lines[0].startswith("claude: 0/2 requests (0%)") and lines[0].endswith("kept 0, rejected 0, failed 0")
    assert lines[1].startswith("llama: 0/1 requests (0%)")
    done = [line for line in lines if line.endswith("— done")]
    assert len(done) == 2
    assert done[0].startswith("claude: 2/2 requests (100%)") and "kept 1, rejected 1, failed 0" in done[0]
    assert done[1].startswith("llama: 1/1 requests (100%)") and "kept 0, rejected 0, failed 1" in done[1]


def test_disabled_progress_prints_nothing_and_ignores_unknown_generators(capsys):
    with GenerationProgress({"claude": tasks(CLAUDE, 1)}, enabled=False) as progress:
        progress.advance("claude", GeneratorTally(accepted=1))
    assert tuple(capsys.readouterr()) == ("", "")
    with GenerationProgress({"claude": tasks(CLAUDE, 1)}) as progress:
        progress.advance("gpt", GeneratorTally(accepted=1))  # not a generator of this run
    err = capsys.readouterr().err
    assert "claude: 0/1 requests" in err and "gpt" not in err
