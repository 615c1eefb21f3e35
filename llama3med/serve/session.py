"""Conversation state shared by `llama3med chat` and the web UI: text history plus the current image.

The model takes one image per conversation. The image goes with the user turn in which it was set, so
switching images keeps the earlier turns as text and attaches the new image to the next question.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from llama3med.api import ChatRequest, Llama3Med, Message
from llama3med.generation import GenerationSettings
from llama3med.io.image_tag import add_image_tag
from llama3med.model.processing import ImageInput


def conversation_request(image: ImageInput | None, history: Sequence[Message], question: str, image_turn: int = 0) -> ChatRequest:
    """Request for `question` after `history`; the image's `<image>` tag goes in the user turn at `image_turn`
    (an index into the messages; the default, the first turn, is what `Llama3Med.chat` does)."""
    messages = [dict(m) for m in history] + [{"role": "user", "content": question}]
    if image is not None:
        turn = next(i for i in range(image_turn, len(messages)) if messages[i]["role"] == "user")
        messages[turn]["content"] = add_image_tag(messages[turn]["content"])
    return ChatRequest(image, messages)


class ChatSession:
    """A multi-turn conversation about an image, answered with streaming."""

    def __init__(self, api: Llama3Med, image: ImageInput | None = None) -> None:
        self.api = api
        self.image = image
        self.history: list[Message] = []
        self.image_turn = 0

    def set_image(self, image: ImageInput) -> None:
        """Talk about `image` from the next question on; earlier turns stay in the history as text."""
        self.image = image
        self.image_turn = len(self.history)

    def reset(self) -> None:
        """Forget the history (the image stays)."""
        self.history = []
        self.image_turn = 0

    def ask(self, question: str, settings: GenerationSettings | None = None) -> Iterator[str]:
        """Stream the answer to `question`; once complete, the turn joins the history."""
        request = conversation_request(self.image, self.history, question, self.image_turn)
        pieces = []
        for piece in self.api.stream_generate(request, settings=settings):
            pieces.append(piece)
            yield piece
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": "".join(pieces)}]
