"""Gradio web UI: upload an image (or pick an example), ask questions, keep the conversation, tune generation.

It answers through the same Python API as the CLI and the server (`Llama3Med.stream_generate`), and loads
images only through `llama3med.io.images.load_image` with the same limits as the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls

import gradio as gr  # noqa: E402

from llama3med.api import Llama3Med  # noqa: E402
from llama3med.generation import GenerationSettings  # noqa: E402
from llama3med.serve.limits import ServerLimits  # noqa: E402
from llama3med.serve.session import conversation_request  # noqa: E402

EXAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
DISCLAIMER = "Research software: answers are not medical advice and must not be used for diagnosis."


def example_images(folder: Path | None, limit: int = 24) -> list[str]:
    """Image files directly in `folder` (sorted, at most `limit`), for the examples gallery."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise FileNotFoundError(f"examples folder {folder} does not exist")
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in EXAMPLE_SUFFIXES][:limit]


def build_web_app(
    api: Llama3Med,
    *,
    examples_dir: Path | None = None,
    limits: ServerLimits | None = None,
    generation: GenerationSettings | None = None,
) -> gr.Blocks:
    """The Gradio app answering with `api`; `generation` sets the sliders' starting values
    (`max_new_tokens`, `temperature`, `top_p`; default: greedy, at most 256 new tokens within the limits)."""
    from llama3med.io.images import ImageLoadError, load_image

    limits = limits or ServerLimits()
    examples = example_images(examples_dir)
    defaults = generation or GenerationSettings(max_new_tokens=min(256, limits.max_tokens))

    def respond(
        image_path: str | None, question: str, state: dict[str, Any], max_new_tokens: float, temperature: float, top_p: float
    ) -> Iterator[tuple[list[dict[str, str]], str, dict[str, Any]]]:
        if not image_path:
            raise gr.Error("Upload an image (or pick an example) first.")
        if not question.strip():
            raise gr.Error("Type a question.")
        try:
            image = load_image(image_path, limits=limits.image_limits())
        except ImageLoadError as error:
            raise gr.Error(f"Cannot read the image: {error.reason}") from None
        history = state["history"]
        request = conversation_request(image, history, question, state["image_turn"])
        shown = history + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        settings = GenerationSettings(max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p))
        for piece in api.stream_generate(request, settings=settings):
            shown[-1]["content"] += piece
            yield shown, "", state
        yield shown, "", {**state, "history": shown}

    def image_changed(state: dict[str, Any]) -> dict[str, Any]:
        # The new image goes with the next question; earlier turns stay as text.
        return {**state, "image_turn": len(state["history"])}

    def clear() -> tuple[list, dict[str, Any]]:
        return [], {"history": [], "image_turn": 0}

    with gr.Blocks(title="Llama3-Med") as app:
        gr.Markdown(f"# Llama3-Med\nAsk questions about a biomedical image. *{DISCLAIMER}*")
        state = gr.State({"history": [], "image_turn": 0})
        with gr.Row():
            with gr.Column(scale=1):
                # format="png": Gradio re-saves uploads, and its default (webp) would change the pixels.
                image = gr.Image(type="filepath", format="png", label="Image", sources=["upload", "clipboard"], elem_id="image")
                if examples:
                    gr.Examples(examples=[[path] for path in examples], inputs=[image], label="Example images")
                with gr.Accordion("Generation settings", open=False):
                    max_new_tokens = gr.Slider(1, limits.max_tokens, value=defaults.max_new_tokens, step=1, label="Max new tokens")
                    temperature = gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p")
            with gr.Column(scale=2):
                # Model output is shown as plain text: no Markdown, HTML or LaTeX rendering of generated text.
                chatbot = gr.Chatbot(
                    label="Conversation", elem_id="conversation", height=420, render_markdown=False, latex_delimiters=[]
                )
                question = gr.Textbox(label="Question", placeholder="e.g. Is there a pleural effusion?", elem_id="question")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    reset = gr.Button("Clear conversation", elem_id="clear")
        inputs = [image, question, state, max_new_tokens, temperature, top_p]
        ask.click(respond, inputs, [chatbot, question, state])
        question.submit(respond, inputs, [chatbot, question, state])
        image.change(image_changed, [state], [state])
        reset.click(clear, None, [chatbot, state])
        chatbot.clear(clear, None, [chatbot, state])  # the chat box's own trash button
    return app


def run_web(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples_dir: Path | None = None,
    generation: GenerationSettings | None = None,
    device: str | None = None,
) -> None:
    """Load `model_dir` and serve the web UI until interrupted."""
    api = Llama3Med.from_pretrained(model_dir, device=device)
    app = build_web_app(api, examples_dir=examples_dir, generation=generation)
    allowed = [str(examples_dir.resolve())] if examples_dir else None
    app.queue().launch(server_name=host, server_port=port, share=False, show_error=True, allowed_paths=allowed, max_file_size="20mb")
