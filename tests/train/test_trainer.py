"""The trainer's own parts (`llama3med.train.trainer`): one optimizer group per module and decay class (frozen
modules left out), and which checkpoint a resume starts from. Training runs are in test_run.py, test_resume.py
and test_distributed.py."""

from __future__ import annotations

from pathlib import Path

from llama3med.model.presets import build_preset
from llama3med.train.hf_private import STAGING_DIR
from llama3med.train.model_setup import prepare_for_stage
from llama3med.train.recipe import load_recipe
from llama3med.train.trainer import (
    discard_interrupted_saves,
    last_complete_checkpoint,
    module_of,
    parameter_groups,
)


def test_per_module_learning_rates_and_frozen_modules() -> None:
    model, _ = build_preset("tiny")
    recipe = load_recipe("tiny-instruct", ["learning_rates.connector=1e-3", "learning_rates.llm=0", "connector=null"])
    prepare_for_stage(model, recipe)
    groups = parameter_groups(model, recipe.learning_rates, set(), 0.0)
    assert [g["lr"] for g in groups] == [1e-3]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.connector.parameters())

    recipe = load_recipe("tiny-instruct", ["learning_rates.connector=1e-3", "learning_rates.llm=2e-5", "connector=null"])
    prepare_for_stage(model, recipe)
    names = {n for n, _ in model.named_parameters() if n.endswith("bias")}
    groups = parameter_groups(model, recipe.learning_rates, {n for n, _ in model.named_parameters()} - names, 0.1)
    by_lr = {(g["lr"], g["weight_decay"]): sum(p.numel() for p in g["params"]) for g in groups}
    llm = sum(p.numel() for p in model.language_model.parameters())
    assert by_lr[(2e-5, 0.1)] == llm and (1e-3, 0.0) in by_lr and (1e-3, 0.1) in by_lr
    assert not any(p.requires_grad for p in model.vision_tower.parameters())


def test_module_of_a_parameter_name() -> None:
    assert module_of("connector.0.weight") == "connector"
    assert module_of("base_model.model.connector.2.bias") == "connector"  # inside a PEFT wrapper
    assert module_of("language_model.model.layers.0.mlp.up_proj.weight") == "llm"
    assert module_of("language_model.connector_like.weight") == "llm"


def test_the_newest_complete_checkpoint_and_interrupted_saves(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    assert last_complete_checkpoint(checkpoints) is None
    for name in ("checkpoint-2", "checkpoint-10", f"{STAGING_DIR}/checkpoint-12"):
        (checkpoints / name).mkdir(parents=True)
    (checkpoints / "checkpoint-99.txt").write_text("not a folder")
    assert last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-10"  # numerically, not by name
    discard_interrupted_saves(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-99.txt"]
    discard_interrupted_saves(checkpoints)  # nothing to remove: no error
