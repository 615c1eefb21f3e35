"""Multi-process training on CPU (gloo): 2-process DDP and DeepSpeed ZeRO follow the loss curve of 1 process
with the same global batch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from train_helpers import REPO_ROOT, TEST_TRAINING, data_override

from llama3med.train.recipe import load_recipe
from llama3med.train.run import TrainResult, train

STEPS = 6


def overrides(out: Path, vqa_file: Path, image_folder: Path, per_device_batch: int) -> list[str]:
    return [
        data_override(vqa_file, "vqa", image_folder), f"output_dir={out}", "connector=null", *TEST_TRAINING,
        f"training.per_device_train_batch_size={per_device_batch}", f"training.max_steps={STEPS}",
        f"training.save_steps={STEPS}", "feature_cache=true", f"feature_cache_dir={out.parent / 'features'}",
    ]


@pytest.fixture(scope="session")
def torch_extensions(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where DeepSpeed's JIT-compiled CPU kernels live: `make test` builds them once into the venv's folder
    (TORCH_EXTENSIONS_DIR); otherwise one folder for the session, so the kernels compile once, not per test."""
    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(tmp_path_factory.mktemp("torch_extensions"))


def run_two_processes(out: Path, vqa_file: Path, image_folder: Path, extensions: str, *extra: str) -> list[float]:
    """`torchrun --nproc_per_node 2 -m llama3med train ...`; returns the logged losses."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TORCH_EXTENSIONS_DIR": extensions}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "llama3med", "train", "tiny-instruct", *overrides(out, vqa_file, image_folder, 2), *extra,
    ]
    process = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=800)
    assert process.returncode == 0, process.stderr[-4000:]
    state = json.loads((out / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, vqa_file: Path, image_folder: Path) -> TrainResult:
    out = tmp_path_factory.mktemp("single") / "one"
    result = train(load_recipe("tiny-instruct", overrides(out, vqa_file, image_folder, 4)))
    assert len(result.losses) == STEPS
    assert result.losses[0] != pytest.approx(result.losses[-1], abs=1e-3)  # the curve is not flat
    return result


def test_two_process_ddp_matches_one_process(
    single: TrainResult, tmp_path: Path, vqa_file: Path, image_folder: Path, torch_extensions: str
) -> None:
    distributed = run_two_processes(tmp_path / "ddp", vqa_file, image_folder, torch_extensions)
    assert distributed == pytest.approx(single.losses, abs=1e-4)


# In the default suite: `make test` installs DeepSpeed (CPU build) and compiles its kernel, so each run takes about
# as long as the DDP one. Without a prebuilt kernel the first run compiles it (minutes on a busy machine).
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed (`make test` installs it)")
def test_deepspeed_zero_on_cpu_matches_one_process(
    stage: str, single: TrainResult, tmp_path: Path, vqa_file: Path, image_folder: Path, torch_extensions: str
) -> None:
    out = tmp_path / stage
    losses = run_two_processes(out, vqa_file, image_folder, torch_extensions, f"training.deepspeed={stage}")
    assert losses == pytest.approx(single.losses, abs=1e-4)
    # the saved model (gathered from the shards under ZeRO-3) equals the single-process one
    expected, actual = load_file(single.output_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) < 1e-4
