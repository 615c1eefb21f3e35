"""Model behaviour: frozen tower, save/load round trip, generation with cache and left padding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import llama3med.model  # noqa: F401  (registers the Auto classes)
from llama3med.api import ChatRequest, Llama3Med
from llama3med.model.presets import build_preset


def _image(seed: int, size: tuple[int, int] = (90, 70)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _batch(processor, questions: list[str], seeds: list[int]):
    prompts = [processor.render_chat([{"role": "user", "content": f"<image>\n{q}"}]) for q in questions]
    return processor(prompts, images=[_image(s) for s in seeds])


def test_vision_tower_frozen_through_a_training_step() -> None:
    model, processor = build_preset("tiny")
    model.train()
    assert not model.vision_tower.training  # stays in eval mode
    before = {k: v.clone() for k, v in model.vision_tower.state_dict().items()}
    inputs = _batch(processor, ["What is shown?", "Is there a nodule?"], [0, 1])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == model.config.image_token_id, -100)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    loss = model(**inputs, labels=labels).loss
    assert model.encode_images(inputs["pixel_values"]).grad_fn is None  # no autograd graph through the tower
    loss.backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in model.vision_tower.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.vision_tower.state_dict().items())
    assert model.connector[0].weight.grad is not None


def test_training_loss_on_supervised_positions_equals_the_full_loss() -> None:
    # Training mode runs the LM head on supervised rows only; the loss and every gradient must equal those
    # of transformers' loss over all positions (eval mode), with and without the Trainer's token count.
    model, processor = build_preset("tiny")
    inputs = _batch(processor, ["What is shown?", "Is there a nodule in the left lung?"], [0, 1])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == model.config.image_token_id, -100)
    labels[0, : labels.shape[1] // 2] = -100  # rows supervise different spans
    trainable = [p for p in model.parameters() if p.requires_grad]
    for extra in ({}, {"num_items_in_batch": torch.tensor(int((labels[:, 1:] != -100).sum()) + 3)}):
        results = []
        for training in (True, False):
            model.train(training)
            model.zero_grad()
            out = model(**inputs, labels=labels, **extra)
            out.loss.backward()
            results.append((out.loss.detach(), [p.grad.clone() for p in trainable], out.logits.shape))
        (loss_sel, grads_sel, shape_sel), (loss_all, grads_all, shape_all) = results
        torch.testing.assert_close(loss_sel, loss_all, rtol=1e-5, atol=1e-6)
        for g_sel, g_all in zip(grads_sel, grads_all):
            torch.testing.assert_close(g_sel, g_all, rtol=1e-4, atol=1e-6)
        assert shape_sel == (int((labels[:, 1:] != -100).sum()), model.config.text_config.vocab_size)
        assert shape_all == (*labels.shape, model.config.text_config.vocab_size)


def test_a_batch_encodes_each_distinct_image_once() -> None:
    model, processor = build_preset("tiny")
    pixels = processor.image_processor([_image(0), _image(1), _image(0), _image(0)])["pixel_values"]  # [4, 3, S, S]
    tiles_seen: list[int] = []
    hook = model.vision_tower.register_forward_hook(lambda module, args, out: tiles_seen.append(args[0].shape[0]))
    features = model.encode_images(pixels)  # [4, g*g, k*C]
    hook.remove()
    one_by_one = torch.cat([model.encode_images(pixels[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(features, one_by_one, rtol=1e-5, atol=1e-6)
    assert torch.equal(features[0], features[2]) and torch.equal(features[0], features[3])
    tiles_per_image = sum((s // model.config.tile_size) ** 2 for s in model.config.scales)
    assert sum(tiles_seen) == 2 * tiles_per_image  # two distinct images, not four


def test_distinct_images_compares_pixels_not_sums() -> None:
    from llama3med.model.modeling import distinct_images

    images = torch.randint(0, 10, (3, 3, 8, 8), generator=torch.Generator().manual_seed(0)).float()  # exact sums
    images[1] = images[0].flip(-1)  # the same pixel sum, a different image
    images[2] = images[0]
    distinct, index = distinct_images(images)
    assert distinct.shape[0] == 2 and torch.equal(distinct[index], images)
    assert distinct_images(images[:2])[1] is None  # all distinct: nothing to gather back


def test_image_token_count_mismatch_is_an_error() -> None:
    model, processor = build_preset("tiny")
    inputs = _batch(processor, ["What?"], [0])
    first_image_token = int((inputs["input_ids"][0] == model.config.image_token_id).nonzero()[0])
    truncated = inputs["input_ids"][:, first_image_token + 3 :]  # cuts into the image-token run
    with pytest.raises(ValueError, match="image tokens"):
        model(input_ids=truncated, pixel_values=inputs["pixel_values"])


def test_save_and_load_in_fresh_process_gives_identical_logits(tmp_path: Path) -> None:
    model, processor = build_preset("tiny")
    model.eval()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    inputs = _batch(processor, ["What organ is this?"], [3])
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs).logits
    script = (
        "import sys, torch, llama3med.model\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        "d = sys.argv[1]\n"
        "m = AutoModelForImageTextToText.from_pretrained(d + '/model').eval()\n"
        "p = AutoProcessor.from_pretrained(d + '/model')\n"
        "assert type(p).__name__ == 'Llama3MedProcessor', type(p)\n"
        "inputs = torch.load(d + '/inputs.pt')\n"
        "with torch.no_grad():\n"
        "    torch.save(m(**inputs).logits, d + '/logits.pt')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, timeout=300)
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_auto_classes_load_a_saved_folder(tiny_model_dir: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Llama3MedForConditionalGeneration"
    assert processor.num_image_tokens == model.config.num_image_tokens == 16


def test_greedy_generation_with_and_without_cache_is_identical() -> None:
    model, processor = build_preset("tiny")
    model.eval()
    inputs = _batch(processor, ["Describe the image."], [5])
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=True)
        uncached = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_left_padded_batch_equals_one_at_a_time(tiny_model_dir: Path) -> None:
    api = Llama3Med.from_pretrained(tiny_model_dir)
    questions = ["Yes?", "Is there a nodule in the right lung?", "What modality is used in this image please?", "Organ?"]
    requests = [ChatRequest(_image(i, (60 + 13 * i, 80)), [{"role": "user", "content": q}]) for i, q in enumerate(questions)]
    lengths = {len(api.prepare([r])["input_ids"][0]) for r in requests}
    assert len(lengths) == 4  # really different lengths, so the batch is padded
    batched = api.generate(requests, max_new_tokens=10)
    single = [api.generate([r], max_new_tokens=10)[0] for r in requests]
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.completion_tokens for b in batched] == [s.completion_tokens for s in single]


def test_stream_chat_yields_the_chat_answer(tiny_model_dir: Path) -> None:
    api = Llama3Med.from_pretrained(tiny_model_dir)
    image = _image(9)
    answer = api.chat(image, "What is it?", max_new_tokens=10)
    assert "".join(api.stream_chat(image, "What is it?", max_new_tokens=10)).strip() == answer
