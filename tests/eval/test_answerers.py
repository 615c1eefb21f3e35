"""Any model, same harness: a tiny random LLaVA through the Auto classes, and a real chat-completions HTTP
server on 127.0.0.1 talked to with the `openai` client."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.eval.answerers import EndpointError, HFImageTextAnswerer, OpenAIChatAnswerer
from llama3med.generation import GenerationSettings

LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny `LlavaForConditionalGeneration` + `LlavaProcessor` saved as a plain HF folder."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from llama3med.model.tokenization import build_tiny_tokenizer, prepare_tokenizer

    tokenizer = prepare_tokenizer(build_tiny_tokenizer())
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=LLAVA_CHAT_TEMPLATE,
                               patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_hf_model_batched_equals_one_at_a_time(tiny_llava_dir: Path) -> None:
    answerer = HFImageTextAnswerer.from_pretrained(tiny_llava_dir, GenerationSettings(max_new_tokens=6))
    images = [Image.new("RGB", (40 + 9 * i, 30), (30 * i, 200 - 20 * i, 90)) for i in range(4)]
    prompts = ["Is there a nodule?", "What organ is shown in this image? Answer with a single word.", "Where?", "Is this a CT scan of the abdomen?"]
    batched = answerer.answer(images, prompts)
    assert len(batched) == 4 and any(batched)
    assert batched == [answerer.answer([image], [prompt])[0] for image, prompt in zip(images, prompts, strict=True)]
    assert answerer.describe()["architecture"] == "LlavaForConditionalGeneration"


def test_eval_command_on_a_hf_model_folder(tiny_llava_dir: Path, small_benchmark_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["eval", "--model", str(tiny_llava_dir), "--benchmarks", "vqa-rad", "--data-root", str(small_benchmark_dir.parent),
            "--out", str(out), "--max-new-tokens", "4", "--batch-size", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["kind"] == "hf" and report["model"]["config_sha256"]
    lines = (out / "predictions" / "vqa-rad.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q1", "q2", "q3", "q4"]


# A chat-completions server ----------------------------------------------------------------------------
class ChatServer(ThreadingHTTPServer):
    """Answers "<colour> <first prompt word>" from the posted image and prompt; fails the first
    `failures` requests with 503; records the most requests in flight at once."""

    daemon_threads = True

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.failures, self.delay = failures, delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.requests = 0
        self.bodies: list[dict] = []


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        import time

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests += 1
            fail = self.server.requests <= self.server.failures
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            self.server.bodies.append(body)
        try:
            time.sleep(self.server.delay)
            if self.path != "/v1/chat/completions":
                return self.reply(404, {"error": {"message": f"no route {self.path}"}})
            if fail:
                return self.reply(503, {"error": {"message": "busy"}}, {"retry-after-ms": "10"})
            content = body["messages"][0]["content"]
            url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
            prompt = next(c["text"] for c in content if c["type"] == "text")
            header, data = url.split(",", 1)
            assert header == "data:image/png;base64"
            red, _, blue = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB").getpixel((0, 0))
            answer = f"{'red' if red > blue else 'blue'} {prompt.split()[0].lower()}"
            self.reply(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            })
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def reply(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def serve(server: ChatServer) -> Iterator[ChatServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    yield from serve(ChatServer(failures=1, delay=0.05))


def base_url(server: ChatServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_endpoint_answers_in_order_with_bounded_concurrency_and_retries(chat_server: ChatServer) -> None:
    answerer = OpenAIChatAnswerer(base_url(chat_server), "served-name", GenerationSettings(max_new_tokens=5, seed=3), max_concurrency=2, max_retries=2)
    images = [Image.new("RGB", (16, 16), (200, 0, 0) if i % 2 else (0, 0, 200)) for i in range(6)]
    prompts = [f"Q{i} is it?" for i in range(6)]
    assert answerer.answer(images, prompts) == [f"{'red' if i % 2 else 'blue'} q{i}" for i in range(6)]
    assert chat_server.requests == 7  # one 503, retried
    assert chat_server.max_in_flight == 2
    body = chat_server.bodies[-1]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == ("served-name", 0.0, 5, 3)


def test_endpoint_gives_up_after_its_retries() -> None:
    for server in serve(ChatServer(failures=100)):
        answerer = OpenAIChatAnswerer(base_url(server), "m", GenerationSettings(), max_retries=1)
        with pytest.raises(EndpointError, match=r"/v1: chat completion failed after 1 retries"):
            answerer.answer([Image.new("RGB", (4, 4))], ["x"])
        assert server.requests == 2


def test_eval_command_against_an_endpoint(chat_server: ChatServer, small_benchmark_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["eval", "--endpoint", base_url(chat_server), "--served-model", "remote", "--benchmarks", "vqa-rad",
            "--data-root", str(small_benchmark_dir.parent), "--out", str(out), "--concurrency", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    predictions = [{k: v for k, v in json.loads(line).items() if k in ("id", "prediction")}
                   for line in (out / "predictions" / "vqa-rad.jsonl").read_text().splitlines()]
    assert predictions == [
        {"id": "q1", "prediction": "red which"},
        {"id": "q2", "prediction": "red is"},
        {"id": "q3", "prediction": "blue what"},
        {"id": "q4", "prediction": "blue is"},
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == {"kind": "openai-endpoint", "path": base_url(chat_server), "model": "remote", "config_sha256": None}
    assert report["label"].startswith("zero-shot (unverified")
