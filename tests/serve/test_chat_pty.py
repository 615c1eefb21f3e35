"""`llama3med chat` through a pseudo-terminal: two turns, an image switch, a reset; answers equal the API's."""

from __future__ import annotations

import sys

import pexpect

from llama3med.serve.session import conversation_request


def answer(child: pexpect.spawn, line: str) -> str:
    """Send a question and return the streamed answer as printed (terminal newlines undone)."""
    child.sendline(line)
    child.expect_exact("assistant> ")
    child.expect_exact("\r\nyou> ")
    return child.before.replace("\r\n", "\n")


def test_chat_two_turns_and_an_image_switch(tiny_model_dir, tiny_api, images) -> None:
    scan, slide = images["scan"], images["slide"]
    command = ["-m", "llama3med", "chat", str(scan), "--model", str(tiny_model_dir), "--max-new-tokens", "10"]
    child = pexpect.spawn(sys.executable, command, encoding="utf-8", timeout=120, dimensions=(40, 400))
    try:
        child.expect_exact("you> ")
        generation = {"max_new_tokens": 10}

        first = answer(child, "Which organ is this?")
        assert first == tiny_api.chat(scan, "Which organ is this?", **generation)
        history = [{"role": "user", "content": "Which organ is this?"}, {"role": "assistant", "content": first}]
        second = answer(child, "Any lesion?")
        assert second == tiny_api.chat(scan, "Any lesion?", history=history, **generation)
        history += [{"role": "user", "content": "Any lesion?"}, {"role": "assistant", "content": second}]

        child.sendline(f"/image {slide}")
        child.expect_exact(f"(now talking about {slide})")
        # The new image goes with the next question; the earlier turns stay as text.
        third = answer(child, "And this one?")
        request = conversation_request(slide, history, "And this one?", image_turn=len(history))
        assert third == tiny_api.generate([request], **generation)[0].text
        assert request.messages[4]["content"] == "<image>\nAnd this one?"

        child.sendline("/image /no/such/file.png")
        child.expect_exact("error: /no/such/file.png")
        child.sendline("/reset")
        child.expect_exact("(history cleared)")
        assert answer(child, "What stain?") == tiny_api.chat(slide, "What stain?", **generation)

        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
