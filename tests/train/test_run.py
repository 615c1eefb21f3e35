"""Stage 1 (align) then stage 2 (instruct) on `tiny`, end to end, with bad records in the data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import data_override, tiny_recipe

from llama3med.api import Llama3Med
from llama3med.io.manifest import MANIFEST_FILE
from llama3med.train.data.conversations import BadRecordError
from llama3med.train.model_setup import load_base
from llama3med.train.outputs import REPORT_FILE
from llama3med.train.run import train


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory, caption_file: Path, image_folder: Path) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("runs") / "align"
    result = train(tiny_recipe("tiny-align", out, data_override(caption_file, "caption", image_folder)))
    return out, result.losses


def test_stage1_trains_only_the_connector_and_writes_a_loadable_folder(stage1: tuple[Path, list[float]]) -> None:
    out, losses = stage1
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)  # 12 captions / batch 4
    from llama3med.model.presets import build_preset

    initial, _ = build_preset("tiny")
    start = initial.state_dict()
    trained = weights(out)
    assert same(part(trained, "language_model."), part(start, "language_model."))
    assert same(part(trained, "vision_tower."), part(start, "vision_tower."))
    assert not same(part(trained, "connector."), part(start, "connector."))
    loaded = Llama3Med.from_pretrained(out)
    assert isinstance(loaded.chat(None, "Hello", max_new_tokens=2), str)
    manifest = [json.loads(line) for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert len(manifest) == 12 and {m["image"] for m in manifest} == {f"img{i}.png" for i in range(12)}
    assert all(m["source"] == "caption" and len(m["image_sha256"]) == 64 for m in manifest)
    # the feature cache holds one file per image, reusable by later runs
    assert len(list((out.parent / "features").rglob("*.safetensors"))) == 12


def test_stage2_starts_from_stage1_connector_and_reports_bad_images(
    stage1: tuple[Path, list[float]], vqa_file: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    align_dir, _ = stage1
    data = vqa_file.with_name("vqa-bad.jsonl")
    records = vqa_file.read_text().splitlines()[:8]
    records.append(json.dumps({"id": "corrupt-1", "image": "corrupt.png", "question": "Is it normal?", "answer": "No"}))
    records.append(json.dumps({"id": "missing-1", "image": "nowhere.png", "question": "Is it normal?", "answer": "Yes"}))
    data.write_text("\n".join(records) + "\n")
    recipe = tiny_recipe("tiny-instruct", tmp_path / "instruct", data_override(data, "vqa", image_folder), f"connector={align_dir}")

    base, _ = load_base({"model": "tiny", "connector": str(align_dir)})
    assert same(part(base.state_dict(), "connector."), part(weights(align_dir), "connector."))

    result = train(recipe)
    printed = capsys.readouterr().err
    assert "vqa:corrupt-1" in printed and "vqa:missing-1" in printed
    report = json.loads((tmp_path / "instruct" / REPORT_FILE).read_text())
    assert report["skipped"] == {"undecodable image": ["vqa:corrupt-1"], "missing image file": ["vqa:missing-1"]}
    assert len(result.losses) == 2  # 8 good records / batch 4
    trained = weights(tmp_path / "instruct")
    assert not same(part(trained, "language_model."), part(base.state_dict(), "language_model."))
    assert same(part(trained, "vision_tower."), part(base.state_dict(), "vision_tower."))
    manifest = [json.loads(line) for line in (tmp_path / "instruct" / MANIFEST_FILE).read_text().splitlines()]
    # stage 1's 12 caption images are inherited; stage 2 adds its 8 images under its own source name
    assert sum(m["source"] == "caption" for m in manifest) == 12
    assert sorted(m["image"] for m in manifest if m["source"] == "vqa") == [f"img{i}.png" for i in range(8)]

    with pytest.raises(BadRecordError, match="record vqa:corrupt-1: undecodable image"):
        train(tiny_recipe("tiny-instruct", tmp_path / "strict", data_override(data, "vqa", image_folder), "connector=null"), strict=True)


def test_existing_checkpoints_need_resume(stage1: tuple[Path, list[float]], caption_file: Path, image_folder: Path) -> None:
    out, _ = stage1
    (out / "checkpoints" / "checkpoint-1").mkdir(exist_ok=True)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_recipe("tiny-align", out, data_override(caption_file, "caption", image_folder)))


def test_recipe_system_prompt_is_trained_with_and_saved_for_inference(tmp_path: Path, caption_file: Path, image_folder: Path) -> None:
    from llama3med.api import ChatRequest

    prompt = "You are a careful biomedical assistant."
    out = tmp_path / "align-system"
    data = data_override(caption_file, "caption", image_folder, max_samples=4)
    train(tiny_recipe("tiny-align", out, data, f"system_prompt={prompt}"))
    api = Llama3Med.from_pretrained(out)
    assert api.processor.system_prompt == prompt
    rendered = api.render(ChatRequest(None, [{"role": "user", "content": "Hello"}]))
    assert rendered.count(prompt) == 1 and rendered.index(prompt) < rendered.index("Hello")
