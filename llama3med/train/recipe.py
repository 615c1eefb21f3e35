"""Training recipes: YAML files with `key=value` command-line overrides (torchtune style).

A recipe names the model (a preset or a model folder), the data list, the stage and the optimiser
settings; its `training:` section goes unchanged to `transformers.TrainingArguments` (batch size,
accumulation, bf16, gradient checkpointing, DeepSpeed/FSDP, logging...). Shipped recipes live in
`llama3med/recipes/` and are found by name (`tiny-align`).

Data paths (`data[].path`, `data[].image_root`) written relative in a recipe file are relative to its **data
root**: `--data-root` (`load_recipe(data_root=...)`) if given, else the recipe's `data_root:` key (environment
variables expanded: the shipped recipes say `$LLAMA3MED_DATA_ROOT`; a literal relative path is relative to the
recipe file), else the recipe file's folder. Paths given as command-line overrides, and `model`, `connector`,
`output_dir`, `feature_cache_dir`, are relative to the working directory. `Recipe.check_data_files` names the
setting to change when a data file is missing.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from llama3med.folders import DATA_ROOT_ENV
from llama3med.train.data.conversations import DataSource
from llama3med.train.data.supervision import TRUNCATION_MODES

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
DATA_PATH_KEYS = ("path", "image_root")
STAGES = ("align", "instruct")
DEEPSPEED_CONFIGS = {"zero2": RECIPES_DIR / "deepspeed" / "zero2.json", "zero3": RECIPES_DIR / "deepspeed" / "zero3.json"}


@dataclass
class Recipe:
    """A validated training recipe (see `docs/TRAINING.md` for every key)."""

    stage: str
    model: str
    output_dir: str
    data: list[dict[str, Any]]
    learning_rates: dict[str, float]
    model_args: dict[str, Any] = field(default_factory=dict)
    connector: str | None = None
    max_length: int = 2048
    truncation: str = "text"
    lora: dict[str, Any] | None = None
    quantization: str | None = None
    feature_cache: bool | str = "auto"
    feature_cache_dir: str | None = None
    feature_cache_dtype: str | None = None
    seed: int = 42
    # The system turn of every training conversation that has none; saved with the model's processor, so that
    # inference sends the same one. null keeps the starting model's (none for presets); "" removes it.
    system_prompt: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None

    def __post_init__(self) -> None:
        # Set by `load_recipe`: where relative data paths of the file pointed, for `check_data_files`' messages.
        self.data_root_origin: DataRoot | None = None
        self.data_paths_as_written: dict[tuple[int, str], tuple[str, str]] = {}
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        unknown = set(self.learning_rates) - {"connector", "llm"}
        if unknown or not {"connector", "llm"} <= set(self.learning_rates):
            raise ValueError(f"learning_rates needs exactly `connector` and `llm` (0 = frozen), got {self.learning_rates}")
        self.learning_rates = {k: float(v) for k, v in self.learning_rates.items()}
        if any(v < 0 for v in self.learning_rates.values()) or not any(self.learning_rates.values()):
            raise ValueError(f"learning rates must be >= 0 and at least one > 0, got {self.learning_rates}")
        if self.stage == "align" and (self.learning_rates["llm"] or self.lora):
            raise ValueError("stage `align` trains the connector only: set learning_rates.llm=0 and no lora")
        if self.lora and not self.learning_rates["llm"]:
            raise ValueError("lora trains adapters on the LLM: set learning_rates.llm > 0 (the adapters' rate)")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {self.truncation!r}")
        if self.quantization not in (None, "4bit"):
            raise ValueError(f"quantization must be null or '4bit' (QLoRA), got {self.quantization!r}")
        if self.quantization and not self.lora:
            raise ValueError("quantization '4bit' (QLoRA) needs a `lora` section: 4-bit weights cannot be trained directly")
        if self.feature_cache not in (True, False, "auto"):
            raise ValueError(f"feature_cache must be true, false or auto, got {self.feature_cache!r}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError(f"system_prompt must be text or null, got {self.system_prompt!r}")
        if not self.data:
            raise ValueError("the recipe's data list is empty")
        self.sources = [DataSource.from_dict(entry) for entry in self.data]

    @property
    def use_feature_cache(self) -> bool:
        """On by default for stage 1 (nothing image-dependent trains before the connector), off for stage 2."""
        return self.stage == "align" if self.feature_cache == "auto" else bool(self.feature_cache)

    def training_arguments(self, checkpoint_dir: Path) -> dict[str, Any]:
        """Keyword arguments of `TrainingArguments` (checkpoints under `checkpoint_dir`)."""
        args = {
            "seed": self.seed,
            "report_to": "none",
            "save_strategy": "steps",
            "logging_steps": 10,
            "include_num_input_tokens_seen": "non_padding",
            "dataloader_pin_memory": torch.cuda.is_available(),
            "use_cpu": not torch.cuda.is_available(),  # lets torchrun / accelerate run multi-process CPU (gloo)
        }
        args.update(self.training)
        deepspeed = args.get("deepspeed")
        if isinstance(deepspeed, str) and deepspeed in DEEPSPEED_CONFIGS:
            args["deepspeed"] = str(DEEPSPEED_CONFIGS[deepspeed])
        args.update(
            output_dir=str(checkpoint_dir),
            learning_rate=max(self.learning_rates.values()),  # per-module rates are set on the param groups
            remove_unused_columns=False,  # image_features / pixel_values are not in the model's signature names
            label_names=["labels"],
        )
        return args

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def check_data_files(self) -> None:
        """Raise `FileNotFoundError` for the first missing data file or image folder, naming the setting that
        put it there: the data root (`--data-root`, `LLAMA3MED_DATA_ROOT`, the recipe's `data_root`) for a path
        written relative in the recipe, else the `data.N.path` / `data.N.image_root` value itself."""
        for index, entry in enumerate(self.data):
            for key in DATA_PATH_KEYS:
                if entry.get(key) is None:
                    continue
                path = Path(entry[key])
                if path.is_file() if key == "path" else path.is_dir():
                    continue
                what = f"{'data file' if key == 'path' else 'image folder'} {path} (data.{index}.{key})"
                written, resolved = self.data_paths_as_written.get((index, key), (None, None))
                root = self.data_root_origin
                if written is None or resolved != str(entry[key]) or root is None:
                    raise FileNotFoundError(f"{what} does not exist; change data.{index}.{key}")
                if root.folder is None:
                    raise FileNotFoundError(
                        f"data.{index}.{key} = {written} is relative to the data root, but {root.setting}: "
                        f"set {DATA_ROOT_ENV}=DIR or pass --data-root DIR, DIR being the folder that holds {written}"
                    )
                raise FileNotFoundError(
                    f"{what} does not exist: it is {written} in the data root {root.folder} ({root.setting}); point "
                    f"--data-root or {DATA_ROOT_ENV} at the folder that holds {written}, or override data.{index}.{key}"
                )


@dataclass(frozen=True)
class DataRoot:
    """The folder a recipe file's relative data paths are under, and the setting it came from (for messages);
    `folder` is None when that setting names an environment variable that is not set."""

    folder: Path | None
    setting: str


def recipe_data_root(config: dict[str, Any], recipe_file: Path, given: str | Path | None) -> DataRoot:
    """The data root of a recipe (see the module docstring for the order)."""
    if given is not None:
        return DataRoot(Path(given).expanduser().absolute(), f"--data-root {given}")
    raw = config.get("data_root")
    if raw is None:
        return DataRoot(recipe_file.parent.absolute(), f"the folder of {recipe_file}")
    expanded = os.path.expanduser(os.path.expandvars(str(raw)))
    if "$" in expanded:
        return DataRoot(None, f"{recipe_file.name} sets data_root: {raw} and that variable is not set")
    if expanded != str(raw):  # from the environment: relative to the working directory, as on the command line
        return DataRoot(Path(expanded).absolute(), f"data_root: {raw} = {expanded}")
    return DataRoot((recipe_file.parent / expanded).absolute(), f"data_root: {raw} in {recipe_file}")


def resolve_data_paths(config: dict[str, Any], root: DataRoot) -> dict[tuple[int, str], tuple[str, str]]:
    """Put the file's relative data paths under the data root, in place; returns {(index, key): (as written,
    as resolved)}. With no data root (an unset variable), paths stay as written for `check_data_files`."""
    written = {}
    for index, entry in enumerate(config.get("data") or []):
        for key in DATA_PATH_KEYS:
            value = entry.get(key) if isinstance(entry, dict) else None
            if value is None or Path(os.path.expanduser(str(value))).is_absolute():
                continue
            resolved = str(root.folder / value) if root.folder is not None else str(value)
            entry[key] = resolved
            written[(index, key)] = (str(value), resolved)
    return written


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file path, or the shipped recipe of that name (`tiny-align`, `llama3-med-8b-instruct-lora`...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"recipe {name_or_path!r} is neither a file nor a shipped recipe ({', '.join(available)})")


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML (`2`, `true`, `[1, 2]`).
    List items are addressed by index (`data.0.max_samples=8`)."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} is not key=value")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as error:
        raise ValueError(f"override {assignment!r}: the value is not valid YAML ({error})") from None
    parts = key.strip().split(".")
    node: Any = config
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"override {key!r}: {'.'.join(parts[:depth + 1])} is not an item of a {len(node)}-item list")
            node = node[int(part)]
        elif isinstance(node, dict):
            if node.get(part) is None:  # a missing or null section (`lora: null`) becomes a mapping
                node[part] = {}
            node = node[part]
        else:
            raise ValueError(f"override {key!r}: {'.'.join(parts[:depth])} is not a mapping or list")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ValueError(f"override {key!r}: index {last} is outside a {len(node)}-item list")
        node[int(last)] = value
    else:
        node[last] = value


def check_optional_packages(training: dict[str, Any]) -> None:
    """DeepSpeed and TensorBoard are optional extras: name the one to install (`llama3med[gpu]`, `[train]`)."""
    from llama3med.extras import require

    deepspeed = training.get("deepspeed")
    if deepspeed:
        require("deepspeed", f"training.deepspeed={deepspeed}", alternative="train without it: training.deepspeed=null")
    report_to = training.get("report_to")
    if "tensorboard" in ([report_to] if isinstance(report_to, str) else report_to or []):
        require("tensorboard", "training.report_to=tensorboard", alternative="training.report_to=none")


def load_recipe(
    name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, data_root: str | Path | None = None
) -> Recipe:
    """Read a recipe, put its relative data paths under its data root (`data_root` here is `--data-root`),
    apply overrides, validate; unknown top-level keys are errors."""
    path = recipe_path(name_or_path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    preview = copy.deepcopy(config)  # the training section as overridden, checked before the data paths are
    for assignment in overrides:
        apply_override(preview, assignment)
    check_optional_packages(preview.get("training") or {})
    given = [a.split("=", 1)[1] for a in overrides if a.split("=", 1)[0].strip() == "data_root"]
    root = recipe_data_root(config, path, data_root if data_root is not None else (given[-1] if given else None))
    written = resolve_data_paths(config, root)
    for assignment in overrides:
        apply_override(config, assignment)
    if root.folder is not None:
        config["data_root"] = str(root.folder)
    known = {f.name for f in fields(Recipe)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(known)}")
    missing = {"stage", "model", "output_dir", "data", "learning_rates"} - set(config)
    if missing:
        raise ValueError(f"{path}: missing required key(s) {sorted(missing)}")
    recipe = Recipe(**config)
    recipe.data_root_origin, recipe.data_paths_as_written = root, written
    return recipe
