"""What a folder given as a model is (`llama3med.folders`): a model folder, a LoRA adapter folder over a usable
base, or a one-line `ModelFolderError` saying why not and what to do; and the cache folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama3med.folders import (
    CACHE_ENV,
    ModelFolder,
    ModelFolderError,
    cache_dir,
    check_model_folder,
    feature_cache_dir,
    read_json,
    resolve_model_folder,
)


def model_folder(path: Path, config: str = '{"model_type": "llama3med"}', weights: str | None = "model.safetensors") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(config)
    if weights:
        (path / weights).write_bytes(b"\0")
    return path


def adapter_folder(path: Path, base: str | None) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
    return path


def a_file(path: Path) -> Path:
    path.write_text("x")
    return path


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert feature_cache_dir() == tmp_path / "cache" / "features"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "llama3med"


def test_a_model_folder_with_any_weight_file(tmp_path):
    for weights in ("model.safetensors", "pytorch_model.bin.index.json"):
        folder = model_folder(tmp_path / weights, weights=weights)
        assert resolve_model_folder(folder) == ModelFolder(folder)
        assert not ModelFolder(folder).is_adapter and ModelFolder(folder).model_config_path == folder / "config.json"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, r"missing does not exist$"),
        (lambda p: a_file(p), r"missing is a file, not a model folder$"),
        (lambda p: p.mkdir() or p, r"is not a model folder \(no config.json\); build one with `llama3med build`"),
        (lambda p: model_folder(p, config="{ nope"), r"config.json cannot be read as JSON \(.*\); the folder is damaged"),
        (lambda p: model_folder(p, config="[1]"), r"config.json is not a JSON object; the folder is damaged"),
        (lambda p: model_folder(p, weights=None), r"has a config.json but no weights \(model.safetensors\): the folder is incomplete"),
    ],
    ids=["missing", "file", "empty", "bad-json", "not-object", "no-weights"],
)
def test_unusable_folders_say_why(tmp_path, make, message):
    with pytest.raises(ModelFolderError, match=message):
        check_model_folder(make(tmp_path / "missing"))


def test_adapter_folders_resolve_their_base(tmp_path):
    base = model_folder(tmp_path / "base")
    absolute = adapter_folder(tmp_path / "lora", str(base))
    assert resolve_model_folder(absolute) == ModelFolder(absolute, base)
    assert ModelFolder(absolute, base).is_adapter and ModelFolder(absolute, base).model_config_path == base / "config.json"
    inside = adapter_folder(tmp_path / "packed", "base-model")
    model_folder(inside / "base-model")
    assert resolve_model_folder(inside) == ModelFolder(inside, inside / "base-model")  # relative to the adapter
    with pytest.raises(ModelFolderError, match=r"is a LoRA adapter folder, not a model folder: run `llama3med merge"):
        resolve_model_folder(absolute, adapters=False)


def test_adapters_without_a_usable_base_say_what_to_do(tmp_path):
    nameless = adapter_folder(tmp_path / "nameless", None)
    with pytest.raises(ModelFolderError, match="does not name its base model .*: set it to the base model folder"):
        resolve_model_folder(nameless)
    orphan = adapter_folder(tmp_path / "orphan", str(tmp_path / "gone"))
    with pytest.raises(ModelFolderError) as raised:
        resolve_model_folder(orphan)
    message = str(raised.value)
    assert f"over the base model {tmp_path / 'gone'}, which cannot be used here" in message and "does not exist" in message
    assert f"run `llama3med merge {orphan} MERGED`" in message


def test_read_json(tmp_path):
    (tmp_path / "a.json").write_text('{"x": 1}')
    assert read_json(tmp_path / "a.json") == {"x": 1}
    with pytest.raises(ModelFolderError, match="cannot be read as JSON"):
        read_json(tmp_path / "none.json")
