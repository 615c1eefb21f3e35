"""Recipes (`llama3med.train.recipe`): every shipped one validates; overrides; clear errors; data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.train.recipe import DEEPSPEED_CONFIGS, RECIPES_DIR, apply_override, load_recipe, recipe_path

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
    assert lora.lora == {"r": 128, "alpha": 256, "dropout": 0.05}
    assert lora.learning_rates == {"connector": 2e-4, "llm": 2e-4}  # the authors: the LoRA rate for the connector too
    assert [source.template for source in align.sources] == ["caption"]  # the authors' stage-1 template: <image> only
    assert all(r.model == "models/llama3-med-8b-authors" for r in (align, full, lora))
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


# Data paths: the data root, never the working directory ----------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_take_their_data_from_the_data_root(name: str) -> None:
    text = recipe_path(name).read_text()
    assert "../" not in text and "data_root: $LLAMA3MED_DATA_ROOT" in text


def test_shipped_recipe_data_resolves_under_llama3med_data_root_from_any_folder(
    benchmarks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLAMA3MED_DATA_ROOT", str(benchmarks_dir))
    recipe = load_recipe("tiny-instruct")
    assert recipe.data[0]["path"] == str(benchmarks_dir / "vqa-rad" / "train.jsonl")
    assert recipe.data[0]["image_root"] == str(benchmarks_dir / "vqa-rad" / "images")
    assert recipe.data_root == str(benchmarks_dir)
    recipe.check_data_files()
    # --data-root wins over the variable
    other = tmp_path / "elsewhere"
    assert load_recipe("tiny-instruct", data_root=other).data[0]["path"] == str(other / "vqa-rad" / "train.jsonl")


def test_missing_data_names_the_setting_to_change(benchmarks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLAMA3MED_DATA_ROOT", raising=False)
    unset = load_recipe("tiny-align")  # loads and validates; only the data check needs the root
    with pytest.raises(FileNotFoundError, match=r"data\.0\.path = captions-sample/captions\.jsonl is relative to the data root, but "
                       r"tiny-align\.yaml sets data_root: \$LLAMA3MED_DATA_ROOT and that variable is not set: "
                       r"set LLAMA3MED_DATA_ROOT=DIR or pass --data-root DIR"):
        unset.check_data_files()
    monkeypatch.setenv("LLAMA3MED_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"data file {tmp_path}/captions-sample/captions\.jsonl \(data\.0\.path\) does not "
                       rf"exist: it is captions-sample/captions\.jsonl in the data root {tmp_path} \(data_root: "
                       r"\$LLAMA3MED_DATA_ROOT = .*\); point --data-root or LLAMA3MED_DATA_ROOT at the folder"):
        load_recipe("tiny-align").check_data_files()
    with pytest.raises(FileNotFoundError, match=r"data file nowhere\.jsonl \(data\.0\.path\) does not exist; change data\.0\.path"):
        load_recipe("tiny-align", ["data.0.path=nowhere.jsonl"]).check_data_files()
    result = CliRunner().invoke(app, ["train", "tiny-align", "--data-root", str(tmp_path / "no-data")])
    assert result.exit_code == 2 and "--data-root" in result.output and "captions-sample/captions.jsonl" in result.output


def test_a_recipe_files_relative_data_paths_are_under_its_own_folder(benchmarks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.jsonl").write_bytes((benchmarks_dir / "vqa-rad" / "train.jsonl").read_bytes())
    text = recipe_path("tiny-instruct").read_text().replace("data_root: $LLAMA3MED_DATA_ROOT", "")
    text = text.replace("path: vqa-rad/train.jsonl", "path: data/train.jsonl").replace("image_root: vqa-rad/images", f"image_root: {benchmarks_dir / 'vqa-rad' / 'images'}")
    (project / "my-recipe.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLAMA3MED_DATA_ROOT", str(tmp_path / "unrelated"))  # only recipes that name it use it
    recipe = load_recipe(project / "my-recipe.yaml")
    assert recipe.data[0]["path"] == str(project / "data" / "train.jsonl")
    assert recipe.data[0]["image_root"] == str(benchmarks_dir / "vqa-rad" / "images")  # absolute: unchanged
    recipe.check_data_files()
    # a path given on the command line is relative to the working directory, like every command-line path
    assert load_recipe(project / "my-recipe.yaml", ["data.0.path=mine.jsonl"]).data[0]["path"] == "mine.jsonl"
