"""The Python API (`llama3med.api`): where the image goes in a conversation, loading a folder, the result of a
generation (text, token counts, finish reason, stop strings) and the errors a caller can meet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llama3med.api import ChatRequest, Llama3Med, build_messages, places_image, with_image_tag
from llama3med.folders import ModelFolderError


@pytest.fixture(scope="module")
def api(tiny_model_dir: Path) -> Llama3Med:
    return Llama3Med.from_pretrained(tiny_model_dir)


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def test_the_image_goes_first_in_the_first_user_turn_unless_a_turn_places_it(api: Llama3Med) -> None:
    tag = api.processor.image_token
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is it?"},
                {"role": "assistant", "content": "a chest film"}, {"role": "user", "content": "which side?"}]
    tagged = with_image_tag(messages)
    assert [m["content"] for m in tagged] == ["be brief", f"{tag}\nwhat is it?", "a chest film", "which side?"]
    assert messages[1]["content"] == "what is it?"  # the caller's messages are not changed
    placed = [{"role": "user", "content": f"compare {tag} with the report"}]
    assert with_image_tag(placed) == placed
    parts = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}]}]
    assert with_image_tag(parts)[0]["content"] == [{"type": "image"}, {"type": "text", "text": "what is it?"}]
    assert places_image([{"type": "image_url", "image_url": {"url": "x"}}]) and not places_image(None)
    with pytest.raises(ValueError, match="needs a user turn"):
        with_image_tag([{"role": "system", "content": "be brief"}])


def test_build_messages_puts_system_history_and_question_in_order() -> None:
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    messages = build_messages("q2", history, system="be brief")
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "be brief"), ("user", "q1"), ("assistant", "a1"), ("user", "q2")
    ]
    messages[1]["content"] = "changed"
    assert history[0]["content"] == "q1"
    assert build_messages("q") == [{"role": "user", "content": "q"}]


def test_from_pretrained_takes_a_dtype_by_name_and_refuses_what_is_not_a_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    half = Llama3Med.from_pretrained(tiny_model_dir, dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    with pytest.raises(ModelFolderError, match="does not exist"):
        Llama3Med.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="not a model folder"):
        Llama3Med.from_pretrained(tmp_path / "empty")


def test_a_result_counts_prompt_and_completion_tokens_and_says_why_it_ended(api: Llama3Med) -> None:
    request = ChatRequest(noise(0), build_messages("What is shown?"))
    text_only = ChatRequest(None, build_messages("What is shown?"))
    image_ids = api.prompt_ids(request)
    assert image_ids.count(api.processor.image_token_id) == api.processor.num_image_tokens
    assert api.processor.image_token_id not in api.prompt_ids(text_only)
    results = api.generate([request, text_only], max_new_tokens=6)
    assert [r.prompt_tokens for r in results] == [api.prompt_length(request), api.prompt_length(text_only)]
    for result in results:
        assert 1 <= result.completion_tokens <= 6
        assert result.finish_reason == ("length" if result.completion_tokens == 6 else "stop")
    assert api.chat(noise(0), "What is shown?", max_new_tokens=6) == results[0].text  # greedy: the same answer


def test_a_stop_string_cuts_the_answer_before_it(api: Llama3Med) -> None:
    full = api.generate([ChatRequest(noise(1), build_messages("Describe it."))], max_new_tokens=16)[0]
    assert len(full.text) >= 4, full.text  # the tiny model's greedy answer is long enough to cut
    stop = full.text[2:4]
    cut = api.generate([ChatRequest(noise(1), build_messages("Describe it."))], max_new_tokens=16, stop=[stop])[0]
    assert cut.text == full.text[: full.text.find(stop)].strip()
    assert cut.finish_reason == "stop"


def test_tags_and_images_must_agree(api: Llama3Med) -> None:
    tag = api.processor.image_token
    two_tags = ChatRequest(noise(0), [{"role": "user", "content": f"{tag} and {tag}?"}])
    with pytest.raises(ValueError, match=r"2 <image> tag\(s\) but 1 image\(s\)"):
        api.generate([two_tags], max_new_tokens=2)
    no_image = ChatRequest(None, [{"role": "user", "content": f"{tag} what is it?"}])
    with pytest.raises(ValueError, match=r"1 <image> tag\(s\) but 0 image\(s\)"):
        api.generate([no_image], max_new_tokens=2)
