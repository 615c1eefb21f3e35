"""Benchmark: requests per second and latency of `llama3med serve` with dynamic batching vs without, for one
or several numbers of concurrent clients.

    .venv/bin/python bench/serve_dynamic_batching.py [--model DIR] [--clients 16 | --clients 1,4,16]
        [--arms both | batching | none] [--seconds 30] [--max-tokens 16] [--image-size 128]
        [--distinct-images] [--threads N]

Without --model the `tiny` preset is built into a temporary folder. Each arm and client count starts its own
server process (`--max-batch-size 16 --batch-window-ms 10` vs `--max-batch-size 1`), warms it up, then keeps
that many concurrent clients sending image questions back to back. By default requests cycle through 4 images;
with `--distinct-images` every request sends an image of its own, so the server's reuse of image features never
applies (every request pays for encoding its image). Results go to docs/PERFORMANCE.md by hand, with the command
and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def image_url(size: int, seed: int) -> str:
    """A random `size` x `size` PNG as a data URL; the seed picks its content."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Images:
    """The image of each request: one of 4 fixed images in turn, or (distinct) a new image every request."""

    def __init__(self, size: int, distinct: bool) -> None:
        self.size, self.distinct = size, distinct
        self.fixed = [image_url(size, seed) for seed in range(4)]
        self.sent = 0

    def next(self, index: int, n: int) -> str:
        self.sent += 1
        return image_url(self.size, 1000 + self.sent) if self.distinct else self.fixed[(index + n) % len(self.fixed)]


async def load(base_url: str, model_name: str, clients: int, seconds: float, max_tokens: int, images: Images) -> tuple[int, int, list[float]]:
    """(answered, failed, latencies in s) for `clients` concurrent clients during `seconds`."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    failed = 0

    async def client(index: int) -> None:
        nonlocal failed
        async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
            n = 0
            while time.monotonic() < deadline:
                content = [{"type": "image_url", "image_url": {"url": images.next(index, n)}}, {"type": "text", "text": f"Finding {index}-{n}?"}]
                body = {"model": model_name, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
                started = time.monotonic()
                response = await http.post("/v1/chat/completions", json=body)
                if response.status_code == 200:
                    latencies.append(time.monotonic() - started)
                else:
                    failed += 1
                n += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), failed, latencies


def run_arm(model: Path, batching: bool, clients: int, args: argparse.Namespace) -> dict:
    port = free_port()
    options = ["--max-batch-size", "16", "--batch-window-ms", "10"] if batching else ["--max-batch-size", "1"]
    if args.threads:
        options += ["--threads", str(args.threads)]
    command = [sys.executable, "-m", "llama3med", "serve", "--model", str(model), "--port", str(port), "--model-name", "bench", "--log-level", "warning", *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        images = Images(args.image_size, args.distinct_images)
        asyncio.run(load(base_url, "bench", clients, args.warmup, args.max_tokens, images))
        before = httpx.get(f"{base_url}/health").json()
        answered, failed, latencies = asyncio.run(load(base_url, "bench", clients, args.seconds, args.max_tokens, images))
        after = httpx.get(f"{base_url}/health").json()
    finally:
        process.terminate()
        process.wait()
    calls = after["generate_calls"] - before["generate_calls"]
    return {
        "arm": "dynamic batching (window 10 ms, up to 16)" if batching else "no batching (max batch 1)",
        "clients": clients,
        "answered": answered,
        "rps": answered / args.seconds,
        "failed": failed,
        "p50": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0],
        "mean_batch": (after["requests_answered"] - before["requests_answered"]) / max(calls, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="Model folder (default: the tiny preset, built now).")
    parser.add_argument("--clients", default="16", help="Concurrent clients; a comma-separated list runs each count in turn.")
    parser.add_argument("--arms", choices=("both", "batching", "none"), default="both", help="Which servers to run.")
    parser.add_argument("--distinct-images", action="store_true", help="A new image in every request (no feature reuse).")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, help="Passed to `llama3med serve --threads` (default: torch's choice).")
    parser.add_argument("--image-size", type=int, default=128, help="Side of the random PNG test images (tiny's largest scale: 128).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from llama3med.model.presets import build_preset

            model = Path(scratch) / "tiny"
            built, processor = build_preset("tiny")
            built.save_pretrained(model)
            processor.save_pretrained(model)
        arms = {"both": (False, True), "batching": (True,), "none": (False,)}[args.arms]
        load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        rows = [run_arm(model, batching, int(clients), args) for clients in args.clients.split(",") for batching in arms]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {platform.platform()}")
    print(f"load average (1/5/15 min) before: {load_before}, after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    threads = args.threads or "default"
    images = "a new image per request" if args.distinct_images else "4 images in turn"
    print(f"{args.seconds:.0f} s per row, max_tokens {args.max_tokens}, {args.image_size} px PNG ({images}), torch threads {threads}, model {args.model or 'tiny preset'}\n")
    print("| arm | clients | answered | requests/s | p50 latency (s) | p95 latency (s) | mean batch | failed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['arm']} | {row['clients']} | {row['answered']} | {row['rps']:.2f} | {row['p50']:.2f} | {row['p95']:.2f} "
              f"| {row['mean_batch']:.1f} | {row['failed']} |")
    if args.arms == "both":
        for clients in args.clients.split(","):
            off, on = (row["rps"] for row in rows if row["clients"] == int(clients))
            print(f"\n{clients} clients: speed-up {on / off:.2f} x")


if __name__ == "__main__":
    main()
