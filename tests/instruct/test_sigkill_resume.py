"""Kill the generator with SIGKILL mid-run, rerun: every (record, generator, kind) exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.instruct_commands import instruct_app
from llama3med.instruct.batches import BATCHES_FILE
from llama3med.instruct.store import CONVERSATIONS_FILE, load_contents

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
REPO_ROOT = Path(__file__).resolve().parents[2]
KIND_OPTIONS = ["--kind", "conversation", "--kind", "closed_qa"]


def cli_args(input_path: Path, out: Path, generator: str, *extra: str) -> list[str]:
    return [
        "generate", "--input", str(input_path), "--out", str(out), "--generator", generator,
        *KIND_OPTIONS, "--no-progress", "--retry-base-delay", "0.01", "--timeout", "5", *extra,
    ]


def start_generator(args: list[str]) -> subprocess.Popen:
    code = "from llama3med.cli.instruct_commands import instruct_app; instruct_app()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"generator exited early: {process.stdout.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the generator")
        time.sleep(0.02)


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_each_key_once(out: Path, records: int) -> None:
    contents = load_contents(out)
    keys = [(e["record_id"], e["generator"], e["kind"]) for e in contents.accepted + contents.rejected]
    assert Counter(keys).most_common(1)[0][1] == 1
    assert {(r, k) for r, _, k in keys} == {
        (f"case-{i:02d}", kind) for i in range(records) for kind in ("conversation", "closed_qa")
    }


def test_sigkill_mid_run_then_rerun(tmp_path, write_records, wire_server, api_keys):
    server = wire_server(default_action="slow", slow_seconds=0.15)
    input_path, out = write_records(12), tmp_path / "out"
    generator = f"openai:llama-3-70b@{server.url}/v1"
    process = start_generator(cli_args(input_path, out, generator, "--concurrency", "2"))
    wait_for(lambda: line_count(out / CONVERSATIONS_FILE) >= 4, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    written = line_count(out / CONVERSATIONS_FILE)
    assert 4 <= written < 24
    # What a kill in the middle of a write leaves: a torn last line, cut off by the rerun.
    with (out / CONVERSATIONS_FILE).open("ab") as handle:
        handle.write(b'{"id": "case-11:conversation:openai:llama-3-70b", "image": "ima')

    server.state.default_action = "ok"
    result = CliRunner().invoke(instruct_app, cli_args(input_path, out, generator))
    assert result.exit_code == 0, result.output
    assert "Cut a torn last line" in result.output
    assert_each_key_once(out, 12)
    # Only requests in flight at the kill (at most 2) were made twice.
    assert 24 <= len(server.attempts) <= 26
    assert all(json.loads(line) for line in (out / CONVERSATIONS_FILE).read_text().splitlines())


def test_sigkill_after_batch_submission_collects_the_same_batch(tmp_path, write_records, wire_server, api_keys):
    server = wire_server(batch_ready_after=1.5)
    input_path, out = write_records(5), tmp_path / "out"
    generator = f"anthropic-batch:claude-3-opus-20240229@{server.url}"
    process = start_generator(cli_args(input_path, out, generator, "--batch-poll-interval", "0.05"))
    wait_for(lambda: line_count(out / BATCHES_FILE) >= 1, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert line_count(out / CONVERSATIONS_FILE) == 0

    result = CliRunner().invoke(instruct_app, cli_args(input_path, out, generator, "--batch-poll-interval", "0.05"))
    assert result.exit_code == 0, result.output
    assert list(server.state.batches) == ["msgbatch_0001"]  # collected, not submitted again
    assert_each_key_once(out, 5)
    events = [json.loads(line)["event"] for line in (out / BATCHES_FILE).read_text().splitlines()]
    assert events == ["submitted", "collected"]
