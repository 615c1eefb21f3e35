"""Acceptance: a real LLM on loopback — this project's OpenAI-compatible server (`llama3med serve`) with the
`small` preset's language model — writes conversations for 20 records of the real caption sample, and the
output trains one `tiny` stage-2 step.

Skips until `llama3med.serve` is importable; slow (CPU generation), so run it with `-m slow`.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from llama3med.instruct.generate import GenerationConfig, generate
from llama3med.instruct.generators import resolve_generators
from llama3med.instruct.retry import RetryPolicy
from llama3med.instruct.store import load_contents

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # ~40 CPU generations with the small model, then a training run
    pytest.mark.skipif(importlib.util.find_spec("llama3med.serve") is None, reason="llama3med.serve not there yet"),
]
REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("closed_qa", "open_qa")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llama3med.model.presets import build_preset

    folder = tmp_path_factory.mktemp("small-model")
    try:
        model, processor = build_preset("small")
    except (ImportError, FileNotFoundError) as error:
        pytest.skip(f"small preset not installed: {error}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def served_model(small_model_dir: Path):
    port = free_port()
    log = (small_model_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama3med", "serve", "--model", str(small_model_dir), "--port", str(port), "--allow-text-only"],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {(small_model_dir / 'serve.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("server did not become healthy in 300 s")
        time.sleep(0.5)
    model_id = httpx.get(f"{url}/v1/models", timeout=5).json()["data"][0]["id"]
    yield url, model_id
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_real_local_llm_writes_llava_conversations_that_train(served_model, benchmarks_dir, tmp_path, monkeypatch):
    url, model_id = served_model
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the local server needs no key
    source = benchmarks_dir / "captions-sample" / "captions.jsonl"
    input_path = tmp_path / "captions-20.jsonl"
    input_path.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:20]), encoding="utf-8")
    out = tmp_path / "out"
    defaults = {"concurrency": 2, "timeout": 300.0, "max_tokens": 48, "temperature": 0.0}
    config = GenerationConfig(
        input_path=input_path,
        out_dir=out,
        generators=tuple(resolve_generators([f"openai:{model_id}@{url}/v1"], None, defaults)),
        kinds=KINDS,
        retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=2.0),
        show_progress=False,
    )
    summary = generate(config)

    assert summary.failed == 0
    contents = load_contents(out)
    keys = Counter((e["record_id"], e["kind"]) for e in contents.accepted + contents.rejected)
    records = [json.loads(line)["id"] for line in input_path.read_text().splitlines()]
    assert set(keys) == {(r, k) for r in records for k in KINDS} and max(keys.values()) == 1
    assert all(e["usage"]["input_tokens"] > 0 and e["usage"]["output_tokens"] > 0 for e in contents.accepted + contents.rejected)
    assert all(e["reason"] and e["detail"] for e in contents.rejected)
    for entry in contents.accepted:
        assert entry["conversations"][0]["value"].startswith("<image>\n")
        assert (benchmarks_dir / "captions-sample" / "images" / entry["image"]).is_file()
    assert contents.accepted, "no conversation kept: nothing to train on"

    images = benchmarks_dir / "captions-sample" / "images"
    overrides = [
        "connector=", f"output_dir={tmp_path / 'tiny-instruct'}", f"data.0.path={out / 'conversations.jsonl'}",
        "data.0.format=llava", f"data.0.image_root={images}", "training.max_steps=1", "training.save_steps=1",
    ]
    trained = subprocess.run(
        [sys.executable, "-m", "llama3med", "train", "tiny-instruct", *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert "trained 1 steps" in trained.stdout
