"""The processor: square padding, image preprocessing of every input kind, `<image>` expansion, padding sides,
image order, the system prompt, and a save/load round trip (on the `tiny` preset's processor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from llama3med.model.presets import build_preset
from llama3med.model.processing import Llama3MedImageProcessor, Llama3MedProcessor, pad_to_square


@pytest.fixture(scope="module")
def processor() -> Llama3MedProcessor:
    _, processor = build_preset("tiny")
    return processor


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (40, 20)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_pad_to_square_centres_the_image_on_the_fill_colour() -> None:
    padded = np.asarray(pad_to_square(solid((255, 0, 0), (40, 20)), (0, 0, 255)))  # [40, 40, 3]
    assert padded.shape == (40, 40, 3)
    assert (padded[10:30] == (255, 0, 0)).all()  # rows 10..29 hold the 20-px-high image
    assert (padded[:10] == (0, 0, 255)).all() and (padded[30:] == (0, 0, 255)).all()
    square = solid((1, 2, 3), (16, 16))
    assert pad_to_square(square, (0, 0, 0)) is square


def test_a_solid_image_normalises_to_its_colour_per_channel() -> None:
    images = Llama3MedImageProcessor(image_size=24, image_mean=[0.5, 0.25, 0.0], image_std=[0.5, 0.25, 1.0],
                                     pad_to_square=False)
    pixels = images(solid((255, 0, 51)))["pixel_values"]
    assert pixels.shape == (1, 3, 24, 24) and pixels.dtype == torch.float32
    expected = torch.tensor([(1.0 - 0.5) / 0.5, (0.0 - 0.25) / 0.25, 0.2])
    assert torch.allclose(pixels[0].mean(dim=(1, 2)), expected, atol=1e-5)
    assert torch.allclose(pixels[0].std(dim=(1, 2)), torch.zeros(3), atol=1e-5)


def test_every_input_kind_becomes_three_channels_at_the_largest_scale(tmp_path: Path) -> None:
    images = Llama3MedImageProcessor(image_size=32)
    path = tmp_path / "grey.png"
    Image.new("L", (10, 30), 128).save(path)
    inputs = [path, path.read_bytes(), Image.new("RGBA", (8, 8), (9, 9, 9, 0)), Image.new("I;16", (12, 12), 4000),
              np.zeros((6, 9), dtype=np.uint8), solid((3, 4, 5))]
    pixels = images(inputs)["pixel_values"]
    assert pixels.shape == (len(inputs), 3, 32, 32)
    assert torch.isfinite(pixels).all()
    assert torch.equal(pixels[0], pixels[1])  # a path and its bytes decode alike


def test_an_unknown_resize_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="resample must be one of"):
        Llama3MedImageProcessor(resample="sinc")


def test_each_image_tag_expands_to_the_models_number_of_image_tokens(processor: Llama3MedProcessor) -> None:
    plain = processor.tokenize("a b")
    one = processor.tokenize(f"{processor.image_token}\na b")
    two = processor.tokenize(f"{processor.image_token}{processor.image_token}\na b")
    n = processor.num_image_tokens
    assert n == 16  # tiny: 32 px tiles, patch 8 -> 4 x 4
    assert one.count(processor.image_token_id) == n and two.count(processor.image_token_id) == 2 * n
    assert len(two) - len(one) == n and len(one) >= len(plain) + n
    assert processor.expand_image_tokens([5, processor.image_token_id, 6]) == [5, *[processor.image_token_id] * n, 6]


def test_padding_sides_and_masks(processor: Llama3MedProcessor) -> None:
    short, long = [7, 8], [7, 8, 9, 10]
    ids, mask = processor.pad([short, long])  # left: what batched generation needs
    pad = processor.tokenizer.pad_token_id
    assert ids.tolist() == [[pad, pad, 7, 8], long] and mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    ids, mask = processor.pad([short, long], padding_side="right")
    assert ids.tolist() == [[7, 8, pad, pad], long] and mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_images_follow_the_order_of_their_tags_flat_or_per_prompt(processor: Llama3MedProcessor) -> None:
    tag = processor.image_token
    red, green, blue = solid((255, 0, 0)), solid((0, 255, 0)), solid((0, 0, 255))
    prompts = [f"{tag}{tag} two", f"{tag} one"]
    flat = processor(prompts, [red, green, blue])
    nested = processor(prompts, [[red, green], [blue]], padding="longest", return_tensors="pt")
    assert torch.equal(flat["pixel_values"], nested["pixel_values"])
    assert flat["input_ids"].shape == flat["attention_mask"].shape == (2, flat["input_ids"].shape[1])
    for row, image in enumerate((red, green, blue)):
        assert torch.equal(flat["pixel_values"][row], processor.image_processor.preprocess_one(image))


def test_tags_and_images_must_agree_in_number(processor: Llama3MedProcessor) -> None:
    with pytest.raises(ValueError, match=r"prompts contain 1 <image> tag\(s\) but 2 image\(s\) were given"):
        processor(f"{processor.image_token} q", [solid((0, 0, 0)), solid((1, 1, 1))])
    with pytest.raises(ValueError, match=r"contain 1 .* but 0 image"):
        processor(f"{processor.image_token} q")
    assert "pixel_values" not in processor("no image here")


def test_the_system_prompt_is_added_unless_the_conversation_has_one(processor: Llama3MedProcessor) -> None:
    user = [{"role": "user", "content": "hi"}]
    own = [{"role": "system", "content": "be terse"}, *user]
    before = processor.system_prompt
    try:
        processor.system_prompt = "you read radiographs"
        assert "you read radiographs" in processor.render_chat(user)
        rendered = processor.render_chat(own)
        assert "be terse" in rendered and "you read radiographs" not in rendered
    finally:
        processor.system_prompt = before
    assert "you read radiographs" not in processor.render_chat(user)


def test_save_and_load_round_trip(processor: Llama3MedProcessor, tmp_path: Path) -> None:
    import llama3med.model  # noqa: F401  (registers the processor with AutoProcessor)

    before, processor.system_prompt = processor.system_prompt, "you read radiographs"
    try:
        processor.save_pretrained(tmp_path)
    finally:
        processor.system_prompt = before
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, Llama3MedProcessor)
    assert (loaded.num_image_tokens, loaded.image_token, loaded.image_token_id, loaded.system_prompt) == (
        processor.num_image_tokens, processor.image_token, processor.image_token_id, "you read radiographs"
    )
    saved, reloaded = processor.image_processor, loaded.image_processor
    assert (reloaded.image_size, reloaded.image_mean, reloaded.image_std, reloaded.resample, reloaded.pad_to_square) == (
        saved.image_size, saved.image_mean, saved.image_std, saved.resample, saved.pad_to_square
    )
    prompt = processor.render_chat([{"role": "user", "content": f"{processor.image_token}\nwhat is shown?"}])
    image = solid((10, 200, 30))
    original, again = processor(prompt, image), loaded(prompt, image)
    assert torch.equal(original["input_ids"], again["input_ids"])
    assert torch.equal(original["pixel_values"], again["pixel_values"])
