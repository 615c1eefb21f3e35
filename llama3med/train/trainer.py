"""`Llama3MedTrainer`: the Hugging Face `Trainer` with per-module learning rates, atomic checkpoints
(`llama3med.train.hf_private`) and throughput in the logs. Everything else (DDP, DeepSpeed, FSDP, bf16,
accumulation, logging) is the Trainer's own, so `accelerate launch`, `torchrun` and `deepspeed` work unchanged."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from llama3med.progress import ProgressDisplay
from llama3med.train.hf_private import STAGING_DIR, AtomicCheckpointTrainer


def module_of(parameter_name: str) -> str:
    """`connector` for connector parameters (also inside a PEFT wrapper), else `llm`."""
    return "connector" if ".connector." in f".{parameter_name}" else "llm"


def parameter_groups(
    model: nn.Module, learning_rates: dict[str, float], decay_names: set[str], weight_decay: float
) -> list[dict[str, Any]]:
    """Optimizer groups per (module, decay): each module gets its own rate; frozen parameters are left out."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((module_of(name), name in decay_names), []).append(parameter)
    return [
        {"params": params, "lr": learning_rates[module], "weight_decay": weight_decay if decay else 0.0}
        for (module, decay), params in sorted(groups.items())
    ]


def last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest `checkpoint-N` folder; staging folders of interrupted saves are never considered."""
    if not checkpoint_dir.is_dir():
        return None
    last = get_last_checkpoint(str(checkpoint_dir))
    return Path(last) if last else None


def discard_interrupted_saves(checkpoint_dir: Path) -> None:
    """Remove what a killed save left in the staging folder (called by the main process at start)."""
    shutil.rmtree(checkpoint_dir / STAGING_DIR, ignore_errors=True)


class Llama3MedTrainer(AtomicCheckpointTrainer):
    """Trainer with `module_learning_rates` ({"connector": lr, "llm": lr}; 0 = frozen)."""

    def __init__(self, *args: Any, module_learning_rates: dict[str, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.module_learning_rates = module_learning_rates
        self._last_log = (time.perf_counter(), 0, 0)  # (time, step, tokens) at the previous training log
        self.add_callback(ThroughputClock(self))
        self.add_callback(ProgressLines())

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer class and settings, with one parameter group per module and decay class."""
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = parameter_groups(
                model, self.module_learning_rates, set(self.get_decay_parameter_names(model)), self.args.weight_decay
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add steps/s and tokens/s since the previous log to the training logs (shown with the loss)."""
        if "loss" in logs:
            now, step, tokens = time.perf_counter(), self.state.global_step, self.state.num_input_tokens_seen
            elapsed = max(now - self._last_log[0], 1e-9)
            logs["steps_per_second"] = round((step - self._last_log[1]) / elapsed, 4)
            if tokens:
                logs["tokens_per_second"] = round((tokens - self._last_log[2]) / elapsed, 1)
            self._last_log = (now, step, tokens)
        super().log(logs, start_time)


class ThroughputClock(TrainerCallback):
    """Starts the throughput clock when training (re)starts, so the first log's rate excludes set-up time."""

    def __init__(self, trainer: Llama3MedTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._last_log = (time.perf_counter(), state.global_step, state.num_input_tokens_seen)


class ProgressLines(TrainerCallback):
    """Plain progress lines (step, loss, rate, time left) at least every 30 s when stderr is not a terminal:
    the Trainer's bar redraws one line in place, which a log file or CI shows only when training ends."""

    def __init__(self) -> None:
        self.display: ProgressDisplay | None = None
        self.task = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        display = ProgressDisplay(unit="steps")
        if display.live or not state.is_world_process_zero:
            return
        self.display = display.__enter__()
        self.task = display.add_task("training", total=state.max_steps)
        if state.global_step:  # a resumed run
            display.update(self.task, completed=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.display is not None:
            self.display.update(self.task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.display is not None and logs and "loss" in logs:
            self.display.update(self.task, loss=f"{logs['loss']:.4g}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)
            self.display = None
