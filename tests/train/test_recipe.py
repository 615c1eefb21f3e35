"""Recipes: every shipped one validates; overrides; clear errors; per-module optimizer groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.model.presets import build_preset
from llama3med.train.model_setup import prepare_for_stage
from llama3med.train.recipe import DEEPSPEED_CONFIGS, RECIPES_DIR, apply_override, load_recipe
from llama3med.train.trainer import parameter_groups

SHIPPED = ["tiny-align", "tiny-instruct", "small-align", "small-instruct", "llama3-med-8b-align",
           "llama3-med-8b-instruct", "llama3-med-8b-instruct-lora"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_validate(name: str, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    args = recipe.training_arguments(tmp_path)
    assert args["output_dir"] == str(tmp_path) and args["remove_unused_columns"] is False
    if args.get("deepspeed"):
        assert Path(args["deepspeed"]).is_file()


def test_paper_hyperparameters_in_the_8b_recipes() -> None:
    align, full, lora = (load_recipe(n) for n in SHIPPED[4:])
    per_gpu = {r.stage + str(bool(r.lora)): r.training["per_device_train_batch_size"] * r.training["gradient_accumulation_steps"] for r in (align, full, lora)}
    assert per_gpu == {"alignFalse": 32, "instructFalse": 16, "instructTrue": 16}  # x 8 GPUs = 256 / 128 / 128
    assert align.learning_rates == {"connector": 1e-3, "llm": 0.0} and align.training["deepspeed"] == "zero3"
    assert full.learning_rates == {"connector": 2e-5, "llm": 2e-5} and full.training["deepspeed"] == "zero3"
    assert lora.lora == {"r": 128, "alpha": 256, "dropout": 0.05} and lora.learning_rates["llm"] == 2e-4
    assert lora.training["deepspeed"] == "zero2"
    assert all(r.training["bf16"] and r.training["lr_scheduler_type"] == "cosine" and r.training["warmup_steps"] == 0.03
               and r.training["weight_decay"] == 0 and r.training["num_train_epochs"] == 1 for r in (align, full, lora))
    assert align.use_feature_cache and not full.use_feature_cache
    assert {p.name for p in DEEPSPEED_CONFIGS.values()} == {"zero2.json", "zero3.json"}


def test_overrides_nested_keys_list_items_and_yaml_values() -> None:
    config = {"data": [{"path": "a", "format": "vqa"}], "training": {"bf16": False}, "lora": None}
    for assignment in ["data.0.max_samples=8", "training.bf16=true", "training.save_steps=5", "lora.r=4", "seed=7"]:
        apply_override(config, assignment)
    assert config == {"data": [{"path": "a", "format": "vqa", "max_samples": 8}], "training": {"bf16": True, "save_steps": 5},
                      "lora": {"r": 4}, "seed": 7}
    with pytest.raises(ValueError, match="data.3 is not an item of a 1-item list"):
        apply_override(config, "data.3.path=x")
    with pytest.raises(ValueError, match="is not key=value"):
        apply_override(config, "training.bf16")


@pytest.mark.parametrize(("override", "message"), [
    ("stage=pretrain", "stage must be one of"),
    ("learning_rates.llm=1e-5", "stage `align` trains the connector only"),
    ("learning_rates.vision=1e-5", "learning_rates needs exactly"),
    ("truncation=middle", "truncation must be one of"),
    ("quantization=4bit", "needs a `lora` section"),
    ("epochs=3", r"unknown key\(s\) \['epochs'\]"),
    ("data=[]", "data list is empty"),
])
def test_bad_recipes_are_clear_errors(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_recipe("tiny-align", [override])


def test_cli_reports_recipe_errors_and_unknown_recipes() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "tiny-align", "stage=pretrain"])
    assert bad.exit_code == 2 and "stage must be one of" in bad.output
    missing = runner.invoke(app, ["train", "no-such-recipe"])
    assert missing.exit_code == 2 and "tiny-align" in missing.output  # lists the shipped recipes
    assert sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) == sorted(SHIPPED)


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
