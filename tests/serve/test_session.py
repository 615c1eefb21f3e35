"""Conversation state for `llama3med chat` and the web UI (`llama3med.serve.session`): the image's tag goes with
the user turn in which it was set; answers stream and join the history; on the tiny model, equal to the API's."""

from __future__ import annotations

from llama3med.api import ChatRequest
from llama3med.generation import GenerationSettings
from llama3med.serve.session import ChatSession, conversation_request

HISTORY = [{"role": "user", "content": "What modality?"}, {"role": "assistant", "content": "CT."}]
SHORT = GenerationSettings(max_new_tokens=6)


def test_the_image_tag_goes_in_the_user_turn_where_the_image_was_set():
    assert conversation_request(None, [], "Is it normal?") == ChatRequest(None, [{"role": "user", "content": "Is it normal?"}])
    first = conversation_request("scan.png", HISTORY, "Which organ?")
    assert [m["content"] for m in first.messages] == ["<image>\nWhat modality?", "CT.", "Which organ?"]
    later = conversation_request("slide.png", HISTORY, "And now?", image_turn=2)
    assert [m["content"] for m in later.messages] == ["What modality?", "CT.", "<image>\nAnd now?"]
    assert HISTORY[0]["content"] == "What modality?"  # the caller's history is not changed


def test_a_session_streams_answers_keeps_history_switches_images_and_resets(tiny_api, images):
    session = ChatSession(tiny_api, images["scan"])
    first = "".join(session.ask("Is there a fracture?", SHORT))
    assert first == tiny_api.chat(images["scan"], "Is there a fracture?", settings=SHORT)
    assert session.history == [{"role": "user", "content": "Is there a fracture?"}, {"role": "assistant", "content": first}]

    session.set_image(images["slide"])
    assert session.image_turn == 2
    second = "".join(session.ask("And this one?", SHORT))
    expected = conversation_request(images["slide"], session.history[:2], "And this one?", image_turn=2)
    assert second == tiny_api.generate([expected], settings=SHORT)[0].text
    assert len(session.history) == 4

    session.reset()
    assert (session.history, session.image_turn, session.image) == ([], 0, images["slide"])
