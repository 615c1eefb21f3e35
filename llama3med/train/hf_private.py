"""The one place this package relies on private parts of the Hugging Face `Trainer`: atomic checkpoints.

transformers offers no public way to choose where a checkpoint is written or to finish it atomically: the
`Trainer` writes `checkpoint-N` into `_get_output_dir(trial)` inside `_save_checkpoint(model, trial)`, and
callbacks (`on_save`) run only once the folder already sits, complete or not, in its final place.
`AtomicCheckpointTrainer` overrides those two private methods so that the Trainer writes `checkpoint-N` inside a
staging folder; once every rank has finished writing, the main process renames it next to the others. A run
killed mid-save leaves only the staging folder, which resume ignores and removes.

Checked against transformers `CHECKED_TRANSFORMERS_VERSIONS`. `check_private_trainer_api` (run when the trainer is
created) fails naming the private method when its signature differs; tests/train/test_hf_private.py also checks
that `_save_checkpoint` still finds its folder through `_get_output_dir` and that a save goes through staging.
"""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path
from typing import Any

import transformers
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

CHECKED_TRANSFORMERS_VERSIONS = ("5.24.0",)
STAGING_DIR = ".staging"  # checkpoints are written here, then renamed into place
# The private `Trainer` methods overridden below, with the parameters the overrides expect.
PRIVATE_TRAINER_METHODS: dict[str, tuple[str, ...]] = {
    "_get_output_dir": ("self", "trial"),
    "_save_checkpoint": ("self", "model", "trial"),
}


class PrivateTrainerApiChanged(RuntimeError):
    """The installed transformers' `Trainer` no longer has a private method as this package overrides it."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"transformers {transformers.__version__}: {detail}. llama3med's atomic checkpoints override it"
            f" (llama3med/train/hf_private.py, checked against transformers {', '.join(CHECKED_TRANSFORMERS_VERSIONS)});"
            " install a checked version or update that module"
        )


def check_private_trainer_api() -> None:
    """Raise `PrivateTrainerApiChanged` naming the first private `Trainer` method that is missing or whose
    parameters differ from `PRIVATE_TRAINER_METHODS`."""
    for name, expected in PRIVATE_TRAINER_METHODS.items():
        method = getattr(Trainer, name, None)
        if not callable(method):
            raise PrivateTrainerApiChanged(f"`Trainer.{name}` no longer exists")
        found = tuple(inspect.signature(method).parameters)
        if found != expected:
            raise PrivateTrainerApiChanged(f"`Trainer.{name}` takes ({', '.join(found)}), expected ({', '.join(expected)})")


class AtomicCheckpointTrainer(Trainer):
    """`Trainer` whose checkpoints appear under their final name only once complete on every rank."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_private_trainer_api()
        self._staging = False  # True while `_save_checkpoint` runs: `_get_output_dir` then names the staging folder
        super().__init__(*args, **kwargs)

    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        run_dir = Path(self._get_output_dir(trial))
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = run_dir / name
            if final.exists():  # a resumed run saving the same step again
                shutil.rmtree(final)
            os.replace(run_dir / STAGING_DIR / name, final)
            (run_dir / STAGING_DIR).rmdir()
            rotate_checkpoints(str(run_dir), self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()
