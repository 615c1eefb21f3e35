"""The pipeline uses the image: `tiny`, trained through the real stage-2 path (recipe -> feature cache -> Trainer
-> model folder) on a question that only the image answers, answers held-out images through the real processor
and greedy generation; the same training on blank images stays at chance.

The question is which side of the picture a large bright rectangle is on. `tiny`'s vision path cuts a 128 px
image into a 4 x 4 grid of tokens, each the features of one 32 x 32 px region (at every scale), so a rectangle on
the left lights up tokens of grid columns 0-1 and one on the right columns 2-3: a random frozen ViT keeps that
apart, and answering needs the connector's output at the right places in the sequence. The test fails when image
tokens are misplaced or masked out, or when the connector's output is ignored: training then only learns the
prior, 50 % here.

Training reads the frozen features from the feature cache; the answers are generated from pixels: a mismatch
between the two paths fails the test too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image
from train_helpers import data_override, tiny_recipe

from llama3med.api import ChatRequest, Llama3Med
from llama3med.train.run import train

QUESTION = "Which side is the bright rectangle on?"
SIDES = ("left", "right")
SIZE = 128  # px: tiny's largest scale, so no resampling blurs the rectangle's edge
N_TRAIN, N_TEST = 256, 40


def write_split(folder: Path, split: str, count: int, *, blank: bool, seed: int) -> Path:
    """`count` images alternating left / right and their VQA records (`<split>.jsonl`); with `blank`, every image
    is the same flat grey and only the records still say left or right."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        side = SIDES[index % 2]
        if blank:
            pixels = np.full((SIZE, SIZE, 3), 60, dtype=np.uint8)
        else:
            image = rng.normal(40, 12, size=(SIZE, SIZE, 3))  # dark, noisy background
            width, height = int(rng.integers(44, 61)), int(rng.integers(64, 121))
            top = int(rng.integers(0, SIZE - height + 1))
            half = SIZE // 2
            left = int(rng.integers(0, half - width + 1)) + (half if side == "right" else 0)
            image[top:top + height, left:left + width] = rng.uniform(200, 255)
            pixels = image.clip(0, 255).astype(np.uint8)
        name = f"{split}-{index}.png"
        Image.fromarray(pixels).save(folder / name)
        records.append({"id": f"{split}-{index}", "image": name, "question": QUESTION, "answer": side})
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def train_and_answer(root: Path, *, blank: bool) -> tuple[float, list[str]]:
    """Stage 2 from a fresh connector on the training split; accuracy of the greedy answers on the test split."""
    images = root / "images"
    images.mkdir(parents=True)
    train_file = write_split(images, "train", N_TRAIN, blank=blank, seed=0)
    test_file = write_split(images, "test", N_TEST, blank=blank, seed=1)
    recipe = tiny_recipe(
        "tiny-instruct", root / "model", data_override(train_file, "vqa", images), "connector=null", "seed=0",
        # ~3 passes over 256 images; the connector learns fastest at a rate above the LLM's
        "training.max_steps=100", "training.per_device_train_batch_size=8", "learning_rates.connector=1e-2",
        "learning_rates.llm=3e-3", "training.lr_scheduler_type=constant", "training.warmup_steps=0",
        "training.logging_steps=10", "feature_cache=true",
    )
    train(recipe)
    api = Llama3Med.from_pretrained(root / "model")
    tests = [json.loads(line) for line in test_file.read_text().splitlines()]
    requests = [ChatRequest(images / t["image"], [{"role": "user", "content": t["question"]}]) for t in tests]
    answers = [result.text for result in api.generate(requests, max_new_tokens=4)]
    first_words = [(re.findall(r"[a-z]+", answer.lower()) or [""])[0] for answer in answers]
    correct = sum(word == t["answer"] for word, t in zip(first_words, tests, strict=True))
    return correct / len(tests), answers


def test_tiny_learns_which_side_the_rectangle_is_on_from_the_image(tmp_path: Path) -> None:
    accuracy, answers = train_and_answer(tmp_path, blank=False)
    assert accuracy >= 0.9, f"held-out accuracy {accuracy:.2f} < 0.90: answers {answers}"


def test_the_same_training_on_blank_images_stays_at_chance(tmp_path: Path) -> None:
    accuracy, answers = train_and_answer(tmp_path, blank=True)
    assert set(answers) <= {"left", "right"}, answers  # it did learn the answer format, only not the answer
    assert accuracy <= 0.65, f"blank images answered at {accuracy:.2f}: the answers leak from somewhere else"

