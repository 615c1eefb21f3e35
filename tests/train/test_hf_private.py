"""The private `Trainer` API that atomic checkpoints override (`llama3med.train.hf_private`): these tests fail,
naming the private method, when an installed transformers changes it; a save goes through the staging folder."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from torch import nn
from transformers import Trainer, TrainingArguments

from llama3med.train.hf_private import (
    CHECKED_TRANSFORMERS_VERSIONS,
    PRIVATE_TRAINER_METHODS,
    STAGING_DIR,
    AtomicCheckpointTrainer,
    PrivateTrainerApiChanged,
    check_private_trainer_api,
)


@pytest.mark.parametrize("name", sorted(PRIVATE_TRAINER_METHODS))
def test_the_overridden_private_trainer_methods_keep_their_signatures(name: str) -> None:
    method = getattr(Trainer, name, None)
    context = (f"transformers {transformers.__version__} (checked: {', '.join(CHECKED_TRANSFORMERS_VERSIONS)}):"
               f" llama3med/train/hf_private.py overrides the private `Trainer.{name}`")
    assert callable(method), f"{context}, which no longer exists"
    found = tuple(inspect.signature(method).parameters)
    assert found == PRIVATE_TRAINER_METHODS[name], f"{context}, which now takes {found}"


def test_save_checkpoint_still_finds_its_folder_through_get_output_dir() -> None:
    source = inspect.getsource(Trainer._save_checkpoint)
    assert "self._get_output_dir(" in source, (
        f"transformers {transformers.__version__}: `Trainer._save_checkpoint` no longer asks `self._get_output_dir`"
        " where to write, so llama3med/train/hf_private.py's staging folder would be bypassed"
    )


def test_a_changed_private_method_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    check_private_trainer_api()  # the installed version passes

    def renamed_parameter(self: Trainer, trial_or_run: Any) -> str:
        return ""

    monkeypatch.setattr(Trainer, "_get_output_dir", renamed_parameter)
    with pytest.raises(PrivateTrainerApiChanged, match=r"`Trainer\._get_output_dir` takes \(self, trial_or_run\)"):
        check_private_trainer_api()
    monkeypatch.undo()
    monkeypatch.delattr(Trainer, "_save_checkpoint")
    with pytest.raises(PrivateTrainerApiChanged, match=r"`Trainer\._save_checkpoint` no longer exists.*hf_private\.py"):
        check_private_trainer_api()


class Regression(nn.Module):
    """y = w x + b on 2 features, returning the Trainer's `loss`."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}  # x [B, 2], labels [B]


class RecordingTrainer(AtomicCheckpointTrainer):
    """Records the folders the Trainer writes model weights to (`save_model` is public)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written_to: list[Path] = []

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        self.written_to.append(Path(output_dir))
        super().save_model(output_dir, _internal_call)


def test_checkpoints_are_written_in_staging_then_renamed_and_rotated(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = [{"x": torch.randn(2), "labels": torch.randn(())} for _ in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, save_strategy="steps", save_steps=1, save_total_limit=2,
        per_device_train_batch_size=2, report_to="none", use_cpu=True, disable_tqdm=True, logging_strategy="no",
    )
    trainer = RecordingTrainer(model=Regression(), args=args, train_dataset=data)
    trainer.train()
    assert trainer.written_to == [tmp_path / STAGING_DIR / f"checkpoint-{step}" for step in (1, 2, 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]  # staging gone, 1 rotated
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= {p.name for p in (tmp_path / "checkpoint-3").iterdir()}
